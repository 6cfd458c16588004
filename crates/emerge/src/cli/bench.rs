//! `emerge bench`: the median time of one forward pass per preset, batch and device.

use std::time::Instant;

use anyhow::Result;
use burn::tensor::{Device, Int, Tensor, TensorData};
use emerge_core::{ModelConfig, UNet};

use super::args::BenchArgs;

pub fn run(args: BenchArgs) -> Result<()> {
    let (devices, missing) = crate::devices::available();
    for reason in &missing {
        println!("not timed: {reason}");
    }
    println!(
        "| preset | parameters | batch | device | ms per step (median of {}) | ms per image |",
        args.runs
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for preset in &args.presets {
        let config = ModelConfig::preset(preset)?;
        for opened in &devices {
            let unet = UNet::new(&config.unet, &opened.device)?;
            for &batch in &args.batches {
                let ms = time_forward(&unet, &config, batch, args.runs, &opened.device)?;
                println!(
                    "| {preset} | {} | {batch} | {} | {ms:.1} | {:.2} |",
                    burn::module::Module::num_params(&unet),
                    opened.label,
                    ms / batch as f64
                );
            }
        }
    }
    Ok(())
}

/// Median wall time of one forward pass (one denoising step without guidance), in ms.
pub fn time_forward(
    unet: &UNet,
    config: &ModelConfig,
    batch: usize,
    runs: usize,
    device: &Device,
) -> Result<f64> {
    let size = config.unet.sample_size;
    let x = Tensor::<4>::zeros([batch, config.unet.in_channels, size, size], device);
    let t = Tensor::<1>::full([batch], 500.0, device);
    let labels = config.unet.null_class().map(|null| {
        Tensor::<1, Int>::from_data(TensorData::new(vec![null as i64; batch], [batch]), device)
    });
    let mut times = Vec::new();
    for run in 0..=runs.max(1) {
        let started = Instant::now();
        let out = unet.forward(x.clone(), t.clone(), labels.clone());
        let _ = out.into_data(); // wait for the result
        if run > 0 {
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}
