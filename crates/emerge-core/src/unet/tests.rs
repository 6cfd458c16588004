use burn::tensor::{Device, Int, Tensor, TensorData};

use super::*;
use crate::noise::GaussianNoise;
use crate::tensor_util::gaussian;

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
