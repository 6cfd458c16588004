//! The command line as a user meets it: real processes, real files.

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::tensor::Device;
use emerge_core::weights::{self, Precision};
use emerge_core::{ModelConfig, UNet};

fn emerge(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_emerge"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("emerge-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn tiny_model(dir: &Path) -> PathBuf {
    let config = ModelConfig::preset("tiny").unwrap();
    let unet = UNet::new(&config.unet, &Device::flex()).unwrap();
    let path = dir.join("tiny.bpk");
    weights::save(&path, &unet, &config, Precision::F16).unwrap();
    path
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `emerge sample --model <model> --count <count> --steps <steps> --out <out> <extra…>`.
fn sample(
    model: &Path,
    count: usize,
    steps: usize,
    out: &Path,
    extra: &[&str],
) -> std::process::Output {
    let (count, steps) = (count.to_string(), steps.to_string());
    let mut args = vec![
        "sample",
        "--model",
        model.to_str().unwrap(),
        "--count",
        &count,
        "--steps",
        &steps,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    emerge(&args)
}

#[test]
fn sample_writes_png_gif_and_idx() {
    let dir = scratch("sample");
    let model = tiny_model(&dir);
    for (file, extra) in [
        ("grid.png", vec!["--class", "3"]),
        ("trajectory.gif", vec![]),
        ("digits.idx", vec!["--sampler", "ddpm"]),
    ] {
        let out = dir.join(file);
        let output = sample(&model, 4, 5, &out, &extra);
        assert!(output.status.success(), "{file}: {}", stderr(&output));
        assert!(out.is_file(), "{file} was not written");
    }
    let png = std::fs::read(dir.join("grid.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // 4 images of 8×8 in one row of 8 columns (clamped to 4) with 2-pixel gaps: 42×12.
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let info = decoder.read_info().unwrap();
    assert_eq!((info.info().width, info.info().height), (42, 12));
    // One frame per step of the 5-step run, each the 4-image grid.
    let gif = std::fs::read(dir.join("trajectory.gif")).unwrap();
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::RGBA);
    let mut decoder = options.read_info(std::io::Cursor::new(gif)).unwrap();
    let mut frames = 0;
    while let Some(frame) = decoder.read_next_frame().unwrap() {
        assert_eq!((frame.width, frame.height), (42, 12));
        frames += 1;
    }
    assert_eq!(frames, 5);
    let idx = std::fs::read(dir.join("digits.idx")).unwrap();
    let (pixels, dims) = emerge::mnist::parse_idx(&idx, 0x0803).unwrap();
    assert_eq!(dims, vec![4, 8, 8]);
    assert_eq!(pixels.len(), 4 * 64);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn same_seed_gives_the_same_file() {
    let dir = scratch("seed");
    let model = tiny_model(&dir);
    let run = |name: &str, seed: &str| {
        let out = dir.join(name);
        let output = sample(&model, 2, 4, &out, &["--seed", seed]);
        assert!(output.status.success(), "{}", stderr(&output));
        std::fs::read(out).unwrap()
    };
    assert_eq!(run("a.idx", "7"), run("b.idx", "7"));
    assert_ne!(run("a.idx", "7"), run("c.idx", "8"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_inputs_get_clear_errors() {
    let dir = scratch("errors");
    let model = tiny_model(&dir);
    let model = model.to_str().unwrap();
    let out = dir.join("x.png");
    let out = out.to_str().unwrap();
    let run_dir = dir.join("run");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["sample", "--model", "/nonexistent/m.bpk", "--out", out],
            "/nonexistent/m.bpk",
        ),
        (
            vec!["sample", "--model", model, "--out", "x.jpg"],
            "must end in .png, .gif or .idx",
        ),
        (
            vec![
                "sample", "--model", model, "--class", "12", "--steps", "2", "--out", out,
            ],
            "class 12 is out of range",
        ),
        (
            vec!["sample", "--model", model, "--steps", "5000", "--out", out],
            "between 1 and 1000",
        ),
        (
            vec![
                "train",
                "--data",
                "/nonexistent",
                "--out",
                run_dir.to_str().unwrap(),
            ],
            "does not exist",
        ),
    ];
    for (args, expected) in cases {
        let output = emerge(&args);
        assert!(!output.status.success(), "{args:?} should fail");
        let message = stderr(&output);
        assert!(message.contains(expected), "{args:?}: {message}");
        assert!(
            !message.contains("panicked"),
            "{args:?} panicked: {message}"
        );
    }
    // A corrupted model file.
    let mut bytes = std::fs::read(model).unwrap();
    let n = bytes.len();
    bytes.truncate(n / 2);
    let broken = dir.join("broken.bpk");
    std::fs::write(&broken, bytes).unwrap();
    let output = emerge(&["sample", "--model", broken.to_str().unwrap(), "--out", out]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("truncated"), "{}", stderr(&output));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn import_then_sample_a_colour_model() {
    let dir = scratch("import");
    let checkpoint =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/diffusers/cifar10-layout");
    let models = dir.join("models");
    let output = emerge(&[
        "import",
        checkpoint.to_str().unwrap(),
        "--out",
        models.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(models.join("manifest.json")).unwrap())
            .unwrap();
    let entry = &manifest["models"][0];
    assert_eq!(entry["name"], "cifar10-layout");
    assert_eq!(
        (entry["channels"].as_u64(), entry["image_size"].as_u64()),
        (Some(3), Some(32))
    );
    let file_size = std::fs::metadata(models.join("cifar10-layout.bpk"))
        .unwrap()
        .len();
    assert_eq!(entry["bytes"].as_u64(), Some(file_size));

    let png = dir.join("colour.png");
    let model = models.join("cifar10-layout.bpk");
    let output = sample(&model, 2, 3, &png, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    reader.next_frame(&mut pixels).unwrap();
    assert!(
        pixels.chunks(4).any(|p| p[0] != p[1] || p[1] != p[2]),
        "a colour model's samples have colour"
    );

    let idx = dir.join("colour.idx");
    let output = sample(&model, 1, 1, &idx, &[]);
    assert!(
        stderr(&output).contains("IDX output holds greyscale images"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn sampling_works_from_any_directory_with_the_built_in_model() {
    let dir = scratch("anywhere");
    let output = Command::new(env!("CARGO_BIN_EXE_emerge"))
        .current_dir(&dir)
        .args(["sample", "--class", "4", "--count", "2", "--steps", "3"])
        .args(["--out", "fours.idx"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let idx = std::fs::read(dir.join("fours.idx")).unwrap();
    let (_, dims) = emerge::mnist::parse_idx(&idx, 0x0803).unwrap();
    assert_eq!(
        dims,
        vec![2, 28, 28],
        "the shipped 28×28 MNIST model drew them"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_image_is_the_same_whatever_count_and_batch_it_is_drawn_in() {
    let dir = scratch("batches");
    let model = tiny_model(&dir);
    let run = |name: &str, count: usize, extra: &[&str]| {
        let out = dir.join(name);
        let output = sample(&model, count, 2, &out, extra);
        assert!(output.status.success(), "{}", stderr(&output));
        let (pixels, dims) =
            emerge::mnist::parse_idx(&std::fs::read(out).unwrap(), 0x0803).unwrap();
        assert_eq!(dims, vec![count, 8, 8]);
        pixels
    };
    for eta in ["0", "1"] {
        let options = ["--sampler", "ddim", "--eta", eta];
        let whole = run("whole.idx", 7, &options);
        let batched = run(
            "batched.idx",
            7,
            &[&options[..], &["--batch", "3"]].concat(),
        );
        let first = run("first.idx", 1, &options);
        // Image i's noise is its own stream of (seed, i): batch size and count change nothing.
        assert_eq!(batched, whole, "η = {eta}: batches of 3 vs one batch of 7");
        assert_eq!(&whole[..64], &first[..], "η = {eta}: image 0 alone");
        assert_ne!(&whole[..64], &whole[64..128], "η = {eta}: images differ");
    }

    let output = sample(&model, 4, 2, &dir.join("t.gif"), &["--batch", "2"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("--count (4) must be at most --batch (2)"),
        "{}",
        stderr(&output)
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Peak resident memory of one run of the binary, in KiB (polled from /proc while it runs).
#[cfg(target_os = "linux")]
fn peak_memory_kib(args: &[&str]) -> u64 {
    let mut child = Command::new(env!("CARGO_BIN_EXE_emerge"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(status) = std::fs::read_to_string(&status_file) {
            let high_water = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            peak = peak.max(high_water.unwrap_or(0));
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "emerge {args:?} failed");
            return peak;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

#[cfg(target_os = "linux")]
#[test]
fn memory_stays_flat_in_the_number_of_samples() {
    let dir = scratch("memory");
    let model = tiny_model(&dir);
    let model = model.to_str().unwrap();
    let peak = |count: &str, out: &str| {
        let out = dir.join(out);
        peak_memory_kib(&[
            "sample",
            "--model",
            model,
            "--sampler",
            "ddim",
            "--steps",
            "1",
            "--count",
            count,
            "--batch",
            "2000",
            "--out",
            out.to_str().unwrap(),
        ])
    };
    // Two batches reach the steady state (the second batch's work overlaps the first's memory);
    // ten more must add nothing like the 5.1 MB (f32) and 1.3 MB (u8) that holding 20,000 more
    // 8×8 images would.
    let small = peak("4000", "small.idx");
    let large = peak("24000", "large.idx");
    assert_eq!(
        std::fs::metadata(dir.join("large.idx")).unwrap().len(),
        16 + 24_000 * 64
    );
    assert!(
        large < small + 3_000,
        "peak memory {small} KiB for 4000 images, {large} KiB for 24,000"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// A 28×28 grey PNG: a vertical bar, the simplest "1" a visitor could draw.
fn write_sketch(path: &Path, size: u32) -> Vec<u8> {
    let pixels: Vec<u8> = (0..size * size)
        .map(|i| {
            if (12..16).contains(&(i % size)) && (4..24).contains(&(i / size)) {
                255
            } else {
                0
            }
        })
        .collect();
    let mut encoder = png::Encoder::new(std::fs::File::create(path).unwrap(), size, size);
    encoder.set_color(png::ColorType::Grayscale);
    encoder
        .write_header()
        .unwrap()
        .write_image_data(&pixels)
        .unwrap();
    pixels
}

#[test]
fn sampling_from_a_sketch_keeps_it_at_low_t_and_redraws_it_at_high_t() {
    let dir = scratch("from");
    let sketch_path = dir.join("sketch.png");
    let sketch = write_sketch(&sketch_path, 28);
    let cleaned = |t: &str, class: &str| {
        let out = dir.join(format!("t{t}.idx"));
        let output = emerge(&[
            "sample",
            "--from",
            sketch_path.to_str().unwrap(),
            "--t",
            t,
            "--class",
            class,
            "--count",
            "1",
            "--steps",
            "20",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
        let (pixels, _) = emerge::mnist::parse_idx(&std::fs::read(out).unwrap(), 0x0803).unwrap();
        // Mean |difference| to the sketch, of 255.
        pixels
            .iter()
            .zip(&sketch)
            .map(|(&a, &b)| (a as f64 - b as f64).abs())
            .sum::<f64>()
            / sketch.len() as f64
    };
    let kept = cleaned("50", "1");
    let redrawn = cleaned("999", "0");
    assert!(
        kept < 12.0,
        "at t = 50 the sketch stays (mean difference {kept:.1} of 255)"
    );
    assert!(
        redrawn > 3.0 * kept,
        "at t = 999 a 0 replaces the bar ({redrawn:.1} vs {kept:.1})"
    );

    let small = dir.join("small.png");
    write_sketch(&small, 20);
    let (small, sketch) = (small.to_str().unwrap(), sketch_path.to_str().unwrap());
    for (args, expected) in [
        (
            ["--from", small, "--t", "600"].as_slice(),
            "is 20×20 pixels but the model takes 28×28",
        ),
        (
            &["--from", sketch, "--t", "1000"],
            "timestep 1000 is outside 0..1000",
        ),
        (&["--from", sketch], "--t"),
    ] {
        let output = emerge(&[&["sample", "--out", "x.png"], args].concat());
        assert!(stderr(&output).contains(expected), "{}", stderr(&output));
    }
    std::fs::remove_dir_all(dir).unwrap();
}
