use burn::tensor::{Device, Int, Tensor, TensorData};

use super::*;
use crate::model::ModelConfig;
use crate::noise::GaussianNoise;
use crate::tensor_util::gaussian;
use crate::weights::{self, Precision};

fn forward_shape(config: &UNetConfig, batch: usize) -> ([usize; 4], [usize; 4]) {
    let device = Device::flex();
    let unet = UNet::new(config, &device).unwrap();
    let size = config.sample_size;
    let x = gaussian(
        &mut GaussianNoise::new(0),
        [batch, config.in_channels, size, size],
        &device,
    );
    let t = Tensor::<1>::from_data(TensorData::new(vec![10f32; batch], [batch]), &device);
    let labels = config
        .num_class_embeds
        .map(|_| Tensor::<1, Int>::from_data(TensorData::new(vec![1i64; batch], [batch]), &device));
    let out = unet.forward(x.clone(), t, labels);
    (x.dims(), out.dims())
}

#[test]
fn output_shape_equals_input_shape_for_every_preset() {
    for name in UNetConfig::PRESETS {
        let (input, output) = forward_shape(&UNetConfig::preset(name).unwrap(), 2);
        assert_eq!(input, output, "preset {name}");
    }
}

#[test]
fn ddpm_cifar10_has_the_papers_parameter_count() {
    let unet = UNet::new(&UNetConfig::ddpm_cifar10(), &Device::flex()).unwrap();
    assert_eq!(unet.num_params(), 35_746_307);
}

#[test]
fn parameter_names_follow_diffusers() {
    use burn::store::ModuleSnapshot;
    let unet = UNet::new(&UNetConfig::ddpm_cifar10(), &Device::flex()).unwrap();
    let names: Vec<String> = unet
        .collect(None, None, false)
        .iter()
        .map(|s| s.name.clone())
        .collect();
    for expected in [
        "time_embedding.linear_1.weight",
        "conv_in.weight",
        "down_blocks.0.resnets.1.norm1.gamma",
        "down_blocks.0.downsamplers.0.conv.weight",
        "down_blocks.1.attentions.0.to_out.0.bias",
        "down_blocks.1.resnets.0.conv_shortcut.weight",
        "mid_block.attentions.0.to_q.weight",
        "mid_block.resnets.1.time_emb_proj.weight",
        "up_blocks.2.attentions.2.group_norm.beta",
        "up_blocks.0.upsamplers.0.conv.weight",
        "conv_norm_out.gamma",
        "conv_out.bias",
    ] {
        assert!(names.iter().any(|n| n == expected), "missing {expected}");
    }
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("up_blocks.3.upsamplers"))
    );
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("down_blocks.3.downsamplers"))
    );
}

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
    let bytes = weights::to_bytes(&unet, &config, Precision::Half).unwrap();
    let (loaded_config, loaded) = weights::from_bytes(bytes.clone(), &Device::flex()).unwrap();
    assert_eq!(loaded_config, config);
    // Weights are stored as f16: the loaded model equals the original with f16-rounded weights.
    let (_, reloaded) = weights::from_bytes(
        weights::to_bytes(&loaded, &config, Precision::Half).unwrap(),
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
    weights::save(&path, &unet, &config, Precision::Half).unwrap();
    weights::save(&path, &unet, &config, Precision::Full).unwrap(); // overwriting is fine
    let (loaded_config, loaded) = weights::load(&path, &Device::flex()).unwrap();
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
    let err = weights::load(&dir.join("missing.bpk"), &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.bpk"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_weight_files_are_errors_that_say_what_is_wrong() {
    let (config, unet) = tiny_model();
    let good = weights::to_bytes(&unet, &config, Precision::Half).unwrap();
    let load = |bytes: Vec<u8>| {
        weights::from_bytes(bytes, &Device::flex())
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
    let mismatched = weights::to_bytes(&unet, &wrong, Precision::Half).unwrap();
    let msg = load(mismatched);
    assert!(msg.contains("do not fit"), "{msg}");

    // An invalid config.
    let mut invalid = config.clone();
    invalid.unet.norm_num_groups = 5;
    let msg = load(weights::to_bytes(&unet, &invalid, Precision::Half).unwrap());
    assert!(msg.contains("norm_num_groups"), "{msg}");

    // A burnpack file written by someone else (no emerge config).
    use burn::store::{BurnpackStore, ModuleSnapshot};
    let mut foreign = BurnpackStore::from_bytes(None);
    unet.save_into(&mut foreign).unwrap();
    let msg = load(foreign.get_bytes().unwrap().to_vec());
    assert!(msg.contains("not written by emerge"), "{msg}");
}
