use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::*;
use crate::noise::GaussianNoise;
use crate::tensor_util::gaussian;

/// A tiny-preset file written at f16 before files were quantized or listed each tensor's
/// checksum: such files must keep loading.
const OLD_F16_FILE: &[u8] = include_bytes!("testdata/tiny-f16.bpk");

fn tiny_model() -> (ModelConfig, UNet) {
    let config = ModelConfig::preset("tiny").unwrap();
    let unet = UNet::new(&config.unet, &Device::flex()).unwrap();
    (config, unet)
}

fn predict(unet: &UNet) -> Tensor<4> {
    let device = Device::flex();
    let x = gaussian(&mut GaussianNoise::new(9), [2, 1, 8, 8], &device);
    let t = Tensor::<1>::from_data(TensorData::new(vec![3f32, 700.0], [2]), &device);
    let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![2i64, 10], [2]), &device);
    unet.forward(x, t, Some(labels))
}

#[test]
fn save_load_round_trip_gives_identical_outputs() {
    let (config, unet) = tiny_model();
    let bytes = to_bytes(&unet, &config, Precision::F16).unwrap();
    let (loaded_config, loaded) = from_bytes(bytes.clone(), &Device::flex()).unwrap();
    assert_eq!(loaded_config, config);
    // Weights are stored as f16: the loaded model equals the original with f16-rounded weights.
    let (_, reloaded) = from_bytes(
        to_bytes(&loaded, &config, Precision::F16).unwrap(),
        &Device::flex(),
    )
    .unwrap();
    let diff = (predict(&loaded) - predict(&reloaded))
        .abs()
        .max()
        .into_scalar::<f32>();
    assert_eq!(diff, 0.0, "a second save/load round trip must be exact");
    let drift = (predict(&unet) - predict(&loaded))
        .abs()
        .max()
        .into_scalar::<f32>();
    assert!(drift < 2e-2, "f16 storage moved outputs by {drift}");
    // f16 on disk: the file is about two bytes per parameter.
    assert!(
        bytes.len() < unet.num_params() * 2 + 64 * 1024,
        "{} bytes for {} params",
        bytes.len(),
        unet.num_params()
    );
}

#[test]
fn atomic_save_and_load_from_a_path() {
    let (config, unet) = tiny_model();
    let dir = std::env::temp_dir().join(format!("emerge-weights-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.bpk");
    save(&path, &unet, &config, Precision::F16).unwrap();
    save(&path, &unet, &config, Precision::F32).unwrap(); // overwriting is fine
    let (loaded_config, loaded) = load(&path, &Device::flex()).unwrap();
    assert_eq!(loaded_config, config);
    // f32 on disk is exact.
    assert_eq!(
        (predict(&unet) - predict(&loaded))
            .abs()
            .max()
            .into_scalar::<f32>(),
        0.0
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "no temporary file is left behind"
    );
    let err = load(&dir.join("missing.bpk"), &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.bpk"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_weight_files_are_errors_that_say_what_is_wrong() {
    let (config, unet) = tiny_model();
    let good = to_bytes(&unet, &config, Precision::F16).unwrap();
    let load = |bytes: Vec<u8>| {
        from_bytes(bytes, &Device::flex())
            .expect_err("must fail")
            .to_string()
    };

    assert!(load(Vec::new()).contains("not a readable model file"));
    assert!(load(b"hello, I am not a model".to_vec()).contains("not a readable model file"));
    for cut in [10, good.len() / 3, good.len() - 1] {
        let msg = load(good[..cut].to_vec());
        assert!(msg.contains("truncated"), "cut at {cut}: {msg}");
    }
    // One flipped bit in the tensor data.
    let mut corrupted = good.clone();
    let at = good.len() - 100;
    corrupted[at] ^= 0x10;
    assert!(load(corrupted).contains("checksum mismatch"));

    // A config that does not match the stored tensors.
    let mut wrong = config.clone();
    wrong.unet.block_out_channels = vec![16, 16];
    let mismatched = to_bytes(&unet, &wrong, Precision::F16).unwrap();
    let msg = load(mismatched);
    assert!(msg.contains("do not fit"), "{msg}");

    // An invalid config.
    let mut invalid = config.clone();
    invalid.unet.norm_num_groups = 5;
    let msg = load(to_bytes(&unet, &invalid, Precision::F16).unwrap());
    assert!(msg.contains("norm_num_groups"), "{msg}");

    // A burnpack file written by someone else (no emerge config).
    use burn::store::{BurnpackStore, ModuleSnapshot};
    let mut foreign = BurnpackStore::from_bytes(None);
    unet.save_into(&mut foreign).unwrap();
    let msg = load(foreign.get_bytes().unwrap().to_vec());
    assert!(msg.contains("not written by emerge"), "{msg}");
}

/// The model's outputs relative to `reference`'s: ‖a − b‖ / ‖b‖.
fn relative_error(unet: &UNet, reference: &UNet) -> f32 {
    let (a, b) = (predict(unet), predict(reference));
    let norm = b.clone().powf_scalar(2.0).sum().sqrt().into_scalar::<f32>();
    (a - b).powf_scalar(2.0).sum().sqrt().into_scalar::<f32>() / norm
}

#[test]
fn quantized_files_are_smaller_and_load_into_the_same_network() {
    let (config, unet) = tiny_model();
    let f16_bytes = to_bytes(&unet, &config, Precision::F16).unwrap();
    let (_, half) = from_bytes(f16_bytes.clone(), &Device::flex()).unwrap();
    let mut sizes = Vec::new();
    for (precision, most_bytes_per_f16_byte, most_error) in
        [(Precision::Int8, 0.65, 0.02), (Precision::Q4, 0.6, 0.3)]
    {
        let bytes = to_bytes(&unet, &config, precision).unwrap();
        let ratio = bytes.len() as f64 / f16_bytes.len() as f64;
        assert!(ratio < most_bytes_per_f16_byte, "{precision}: {ratio}");
        let (loaded_config, loaded) = from_bytes(bytes.clone(), &Device::flex()).unwrap();
        assert_eq!(loaded_config, config);
        assert_eq!(loaded.num_params(), unet.num_params());
        let error = relative_error(&loaded, &half);
        assert!(error < most_error, "{precision}: outputs moved by {error}");
        if precision == Precision::Int8 {
            // absmax codes are a fixed point: re-encoding what they decode to changes nothing
            assert!(repack(bytes.clone(), precision).unwrap() == bytes);
        }
        sizes.push(bytes.len());
    }
    assert!(sizes[1] < sizes[0]);
}

#[test]
fn files_written_before_quantization_still_load() {
    let (config, old) = from_bytes(OLD_F16_FILE.to_vec(), &Device::flex()).unwrap();
    assert_eq!(config, ModelConfig::preset("tiny").unwrap());
    // Repacked at f16 it holds the same values: the loaded networks agree exactly.
    let (_, repacked) = from_bytes(
        repack(OLD_F16_FILE.to_vec(), Precision::F16).unwrap(),
        &Device::flex(),
    )
    .unwrap();
    assert_eq!(relative_error(&repacked, &old), 0.0);
    // and it can be quantized like any other
    let q4 = repack(OLD_F16_FILE.to_vec(), Precision::Q4).unwrap();
    assert!(q4.len() * 5 < OLD_F16_FILE.len() * 3, "{} bytes", q4.len());
    let (_, quantized) = from_bytes(q4, &Device::flex()).unwrap();
    assert!(relative_error(&quantized, &old) < 0.3);
}

/// `bytes` with the stored data of tensor `name` altered in one bit.
fn flip_a_bit_of(bytes: &[u8], name: &str) -> Vec<u8> {
    let reader = Reader::from_bytes(Bytes::from_bytes_vec(bytes.to_vec())).unwrap();
    let data = reader.tensor_data(name).unwrap();
    let at = bytes
        .windows(data.len())
        .position(|window| window == data.as_slice())
        .expect("the tensor's bytes are in the file");
    let mut corrupted = bytes.to_vec();
    corrupted[at + data.len() / 2] ^= 0x04;
    corrupted
}

#[test]
fn a_corrupted_or_missing_quantized_tensor_is_refused_by_name() {
    let (config, unet) = tiny_model();
    // a 32×32×3×3 kernel: quantized by both schemes
    let name = "down_blocks.1.resnets.0.conv2.weight";
    for precision in [Precision::Int8, Precision::Q4] {
        let good = to_bytes(&unet, &config, precision).unwrap();
        for stored in [name.to_string(), format!("{name}{SCALE_SUFFIX}")] {
            let msg = from_bytes(flip_a_bit_of(&good, &stored), &Device::flex())
                .expect_err("must fail")
                .to_string();
            assert!(
                msg.contains(&format!("checksum mismatch in tensor {stored}")),
                "{precision}: {msg}"
            );
        }
        // A file that lists a quantized tensor whose scales are gone (checksums rewritten to
        // match, as a faulty writer would).
        let reader = Reader::from_bytes(Bytes::from_bytes_vec(good)).unwrap();
        let metadata = reader.metadata().clone();
        let kept: Vec<Stored> = reader
            .into_tensors()
            .unwrap()
            .into_iter()
            .filter(|t| t.name != format!("{name}{SCALE_SUFFIX}"))
            .collect();
        let (crc, each) = checksums(&kept).unwrap();
        let mut writer = Writer::new(kept)
            .with_metadata(CHECKSUM_KEY, &format!("{crc:08x}"))
            .with_metadata(TENSOR_CHECKSUMS_KEY, &serde_json::to_string(&each).unwrap());
        for (key, value) in metadata
            .iter()
            .filter(|(k, _)| !k.starts_with(CHECKSUM_KEY))
        {
            writer = writer.with_metadata(key, value);
        }
        let msg = from_bytes(writer.into_bytes().unwrap().to_vec(), &Device::flex())
            .expect_err("must fail")
            .to_string();
        assert!(
            msg.contains(&format!(
                "quantized tensor '{name}' but lacks its codes or scales"
            )),
            "{precision}: {msg}"
        );
    }
}

#[test]
fn parameters_move_between_networks_and_a_wrong_count_is_refused() {
    let (config, unet) = tiny_model();
    let other = UNet::new(&config.unet, &Device::flex()).unwrap();
    let values = parameters::flattened(&unet);
    let filled = parameters::replaced(other, values.clone()).unwrap();
    let diff = (predict(&unet) - predict(&filled))
        .abs()
        .max()
        .into_scalar::<f32>();
    assert_eq!(
        diff, 0.0,
        "the network with the copied parameters computes the same"
    );

    let short = values[..values.len() - 1].to_vec();
    let fresh = UNet::new(&config.unet, &Device::flex()).unwrap();
    let err = parameters::replaced(fresh, short).unwrap_err().to_string();
    assert!(err.contains("values do not fit the network's"), "{err}");
}

#[test]
fn copied_to_an_autodiff_device_keeps_the_weights_and_trains() {
    let (config, unet) = tiny_model();
    let device = Device::flex().autodiff();
    let copy = copied_to(&unet, &config.unet, &device).unwrap();
    let diff = (predict(&unet) - predict(&copy.valid()))
        .abs()
        .max()
        .into_scalar::<f32>();
    assert_eq!(diff, 0.0);
    // Its parameters take gradients: the copy is trainable.
    let x = gaussian(&mut GaussianNoise::new(1), [1, 1, 8, 8], &device);
    let t = Tensor::<1>::from_data(TensorData::new(vec![5f32], [1]), &device);
    let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![3i64], [1]), &device);
    let loss = copy.forward(x, t, Some(labels)).powi_scalar(2).mean();
    let grads = loss.backward();
    assert!(copy.conv_in.weight.val().grad(&grads).is_some());
}
