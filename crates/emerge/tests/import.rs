//! `emerge import` on broken or unsupported diffusers checkpoints: every problem is an error that
//! names the option or the tensor at fault.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use emerge::import;
use serde_json::{Value, json};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/diffusers")
        .join(name)
}

/// A copy of a fixture checkpoint in a scratch directory, its `file` JSON edited by `edit`.
fn edited_copy(
    name: &str,
    tag: &str,
    file: &str,
    edit: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("emerge-import-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let path = dir.join(file);
    let mut json: serde_json::Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(&path, serde_json::to_string(&json).unwrap()).unwrap();
    dir
}

fn import_error(dir: &Path) -> String {
    match import::import(dir, &Device::flex()) {
        Ok(_) => panic!("importing {} should fail", dir.display()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn unsupported_model_options_are_refused_by_name() {
    let cases: [(&str, Value, &str); 8] = [
        (
            "resnet_time_scale_shift",
            json!("scale_shift"),
            "'resnet_time_scale_shift' = \"scale_shift\" is not supported",
        ),
        (
            "time_embedding_type",
            json!("fourier"),
            "'time_embedding_type'",
        ),
        (
            "down_block_types",
            json!([
                "DownBlock2D",
                "CrossAttnDownBlock2D",
                "DownBlock2D",
                "DownBlock2D"
            ]),
            "\"CrossAttnDownBlock2D\"",
        ),
        (
            "up_block_types",
            json!(["UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"]),
            "does not mirror down block",
        ),
        (
            "out_channels",
            json!(6),
            "'out_channels' = 6 differs from 'in_channels' = 3",
        ),
        ("center_input_sample", json!(true), "'center_input_sample'"),
        ("class_embed_type", json!("timestep"), "'class_embed_type'"),
        (
            "some_future_option",
            json!(3),
            "unknown option 'some_future_option'",
        ),
    ];
    for (i, (key, value, expected)) in cases.into_iter().enumerate() {
        let dir = edited_copy(
            "cifar10-layout",
            &format!("option{i}"),
            "config.json",
            |c| {
                c.insert(key.to_string(), value);
            },
        );
        let message = import_error(&dir);
        assert!(message.contains(expected), "{key}: {message}");
    }
}

#[test]
fn unsupported_scheduler_options_are_refused_by_name() {
    let cases: [(&str, Value, &str); 4] = [
        (
            "prediction_type",
            json!("v_prediction"),
            "'prediction_type' = \"v_prediction\"",
        ),
        (
            "beta_schedule",
            json!("scaled_linear"),
            "'beta_schedule' = \"scaled_linear\"",
        ),
        (
            "variance_type",
            json!("learned_range"),
            "'variance_type' = \"learned_range\"",
        ),
        ("trained_betas", json!([0.1, 0.2]), "'trained_betas'"),
    ];
    for (i, (key, value, expected)) in cases.into_iter().enumerate() {
        let dir = edited_copy(
            "cifar10-layout",
            &format!("scheduler{i}"),
            "scheduler_config.json",
            |c| {
                c.insert(key.to_string(), value);
            },
        );
        let message = import_error(&dir);
        assert!(message.contains(expected), "{key}: {message}");
    }
}

#[test]
fn missing_unknown_and_misshapen_tensors_are_named() {
    // a class embedding the file does not hold
    let dir = edited_copy("cifar10-layout", "missing", "config.json", |c| {
        c.insert("num_class_embeds".into(), json!(11));
    });
    assert!(import_error(&dir).contains("missing tensor 'class_embedding.weight'"));
    // one residual block per level fewer than the file holds
    let dir = edited_copy("cifar10-layout", "unknown", "config.json", |c| {
        c.insert("layers_per_block".into(), json!(1));
    });
    assert!(import_error(&dir).contains("unknown tensor 'down_blocks.0.resnets.1.conv1.weight'"));
    // grey instead of colour: the first and last convolutions no longer fit
    let dir = edited_copy("cifar10-layout", "shape", "config.json", |c| {
        c.insert("in_channels".into(), json!(1));
        c.insert("out_channels".into(), json!(1));
    });
    let message = import_error(&dir);
    assert!(
        message.contains("'conv_in.weight'") && message.contains("[16, 1, 3, 3]"),
        "{message}"
    );
}

#[test]
fn damaged_or_absent_files_get_clear_errors() {
    let dir = edited_copy("cifar10-layout", "truncated", "config.json", |_| {});
    let weights = dir.join("diffusion_pytorch_model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    assert!(import_error(&dir).contains("cannot read the weights"));

    std::fs::remove_file(&weights).unwrap();
    assert!(import_error(&dir).contains("no weights in"));

    std::fs::write(dir.join("config.json"), "{ not json").unwrap();
    assert!(import_error(&dir).contains("is not valid JSON"));

    std::fs::remove_file(dir.join("config.json")).unwrap();
    assert!(import_error(&dir).contains("config.json"));

    assert!(import_error(&dir.join("nowhere")).contains("is not a directory"));
}

#[test]
fn the_scheduler_config_sets_the_schedule_and_sampling_only_settings_are_noted() {
    let dir = edited_copy(
        "cifar10-layout",
        "scheduler-notes",
        "scheduler_config.json",
        |c| {
            c.insert("variance_type".into(), json!("fixed_large"));
            c.insert("timestep_spacing".into(), json!("trailing"));
            // Written by a tool that drops the ".0": the same number, not an unsupported one.
            c.insert("clip_sample_range".into(), json!(1));
            c.insert("num_train_timesteps".into(), json!(500));
        },
    );
    let imported = import::import(&dir, &Device::flex()).unwrap();
    assert_eq!(imported.config.schedule.num_train_timesteps, 500);
    assert_eq!(
        imported.config.schedule.variance_type,
        emerge_core::VarianceType::FixedLarge
    );
    assert!(
        imported
            .notes
            .iter()
            .any(|n| n.contains("'timestep_spacing' = \"trailing\"")),
        "{:?}",
        imported.notes
    );
    assert_eq!(imported.config.unet.attention_resolutions, vec![16]);
    assert_eq!(imported.config.unet.attention_head_dim, None);
}
