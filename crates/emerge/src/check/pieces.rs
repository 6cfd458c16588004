//! The pieces `check-devices` runs on every device: each layer type of the UNet, whole forward
//! passes and one training step, each a function of the device built only from host values.

use anyhow::Result;
use burn::module::Module;
use burn::tensor::activation::silu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use emerge_core::unet::{norm, timestep_embedding};
use emerge_core::{GaussianNoise, ModelConfig, UNet};

fn host_values<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    tensor
        .try_into_vec_as::<f32>()
        .map_err(|e| anyhow::anyhow!("cannot read a result back: {e:?}"))
}

/// A seeded N(0, 1) tensor built from host values, so every device sees the same input.
fn normal<const D: usize>(shape: [usize; D], seed: u64, device: &Device) -> Tensor<D> {
    let len = shape.iter().product();
    let values = GaussianNoise::new(seed).normals(len);
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Timesteps spread over [0, T): the sinusoid sees small and large arguments alike.
fn spread_timesteps(batch: usize, train_timesteps: usize, device: &Device) -> Tensor<1> {
    let values: Vec<f32> = (0..batch)
        .map(|i| ((i * 397 + 11) % train_timesteps) as f32)
        .collect();
    Tensor::from_data(TensorData::new(values, [batch]), device)
}

/// One piece of the network to run on a device: a function of the device that returns the
/// output on it, built only from host values and a module copied to that device.
pub(super) type Piece<'a> = Box<dyn Fn(&Device) -> Result<Vec<f32>> + 'a>;

/// The layer-by-layer pieces of `unet` (the shipped model), at `batch`.
pub(super) fn layer_pieces<'a>(
    unet: &'a UNet,
    config: &'a ModelConfig,
    batch: usize,
) -> Vec<(String, Piece<'a>)> {
    let c = &config.unet;
    let size = c.sample_size;
    let ch = &c.block_out_channels;
    let temb_dim = c.time_embed_dim();
    let seed = 1000 + batch as u64;
    let mut pieces: Vec<(String, Piece<'a>)> = Vec::new();

    let [sinusoid_dim, _] = unet.time_embedding.linear_1.weight.dims();
    pieces.push((
        format!("time embedding (sinusoid + MLP), batch {batch}"),
        Box::new(move |device: &Device| {
            let mlp = unet.time_embedding.clone().to_device(device);
            let t = spread_timesteps(batch, config.schedule.num_train_timesteps, device);
            let sinusoid =
                timestep_embedding(t, sinusoid_dim, unet.flip_sin_to_cos, unet.freq_shift);
            host_values(mlp.forward(sinusoid))
        }),
    ));
    pieces.push((
        format!(
            "conv 3×3 ({}→{}, {size}×{size}), batch {batch}",
            c.in_channels, ch[0]
        ),
        Box::new(move |device: &Device| {
            let conv = unet.conv_in.clone().to_device(device);
            host_values(conv.forward(normal([batch, c.in_channels, size, size], seed, device)))
        }),
    ));
    pieces.push((
        format!(
            "group norm + SiLU ({} channels, {} groups), batch {batch}",
            ch[0], c.norm_num_groups
        ),
        Box::new(move |device: &Device| {
            // On a GPU, the UNet's own kernel (emerge-core's `unet/norm_kernel.rs`).
            let group_norm = unet.conv_norm_out.clone().to_device(device);
            let x = normal([batch, ch[0], size, size], seed + 1, device);
            host_values(norm::forward_silu(&group_norm, x))
        }),
    ));
    if let Some(block) = unet.down_blocks.get(1) {
        let (cin, cout, res) = (ch[0], ch[1], c.resolution(1));
        pieces.push((
            format!("resnet block ({cin}→{cout}, {res}×{res}), batch {batch}"),
            Box::new(move |device: &Device| {
                let resnet = block.resnets[0].clone().to_device(device);
                let x = normal([batch, cin, res, res], seed + 2, device);
                let emb = normal([batch, temb_dim], seed + 3, device);
                // on a GPU the shift's sum goes through the GroupNorm kernel
                let shift = norm::Shift::whole(resnet.shift(silu(emb)));
                host_values(resnet.forward(x, shift))
            }),
        ));
    }
    let deepest = ch.len() - 1;
    let (mid, res) = (ch[deepest], c.resolution(deepest));
    pieces.push((
        format!("attention ({mid} channels, {res}×{res}), batch {batch}"),
        Box::new(move |device: &Device| {
            let attention = unet.mid_block.attentions[0].clone().to_device(device);
            host_values(attention.forward(normal([batch, mid, res, res], seed + 4, device)))
        }),
    ));
    if let Some(down) = unet.down_blocks[0].downsamplers.first() {
        pieces.push((
            format!(
                "downsample (conv stride 2, {}, {size}×{size}), batch {batch}",
                ch[0]
            ),
            Box::new(move |device: &Device| {
                let down = down.clone().to_device(device);
                host_values(down.forward(normal([batch, ch[0], size, size], seed + 5, device)))
            }),
        ));
    }
    if let Some(up) = unet.up_blocks[0].upsamplers.first() {
        pieces.push((
            format!("upsample (nearest ×2 + conv, {mid}, {res}×{res}), batch {batch}"),
            Box::new(move |device: &Device| {
                let up = up.clone().to_device(device);
                host_values(up.forward(normal([batch, mid, res, res], seed + 6, device)))
            }),
        ));
    }
    pieces
}

/// ε̂ = ε_θ(x_t, t, y) of a whole network at `batch`.
pub(super) fn forward_piece<'a>(
    unet: &'a UNet,
    config: &'a ModelConfig,
    batch: usize,
) -> Piece<'a> {
    Box::new(move |device: &Device| {
        let c = &config.unet;
        let net = unet.clone().to_device(device);
        let x = normal(
            [batch, c.in_channels, c.sample_size, c.sample_size],
            2000 + batch as u64,
            device,
        );
        let t = spread_timesteps(batch, config.schedule.num_train_timesteps, device);
        let labels = c.num_class_embeds.map(|classes| {
            let values: Vec<i64> = (0..batch).map(|i| (i % classes) as i64).collect();
            Tensor::<1, Int>::from_data(TensorData::new(values, [batch]), device)
        });
        host_values(net.forward(x, t, labels))
    })
}

/// The shipped network with dropout off (its masks are random per device), as model-file bytes:
/// loaded onto an autodiff device, its parameters are tracked for gradients.
pub(super) fn without_dropout(unet: &UNet, config: &ModelConfig) -> Result<Vec<u8>> {
    let mut config = config.clone();
    config.unet.dropout = 0.0;
    Ok(emerge_core::weights::to_bytes(
        unet,
        &config,
        emerge_core::weights::Precision::F32,
    )?)
}

/// A training batch from host draws: x_0 in [−1, 1], labels, timesteps spread over [0, T), ε.
fn training_batch(config: &ModelConfig, batch: usize) -> emerge_core::training::Batch {
    let c = &config.unet;
    let len = batch * c.in_channels * c.sample_size * c.sample_size;
    let mut rng = GaussianNoise::new(3000 + batch as u64);
    let t_max = config.schedule.num_train_timesteps;
    emerge_core::training::Batch {
        x0: (0..len)
            .map(|_| rng.next_uniform() as f32 * 2.0 - 1.0)
            .collect(),
        labels: (0..batch)
            .map(|i| (i % c.num_class_embeds.unwrap_or(1)) as i64)
            .collect(),
        timesteps: (0..batch).map(|i| (i * 397 + 11) % t_max).collect(),
        noise: rng.normals(len),
    }
}

/// Every float parameter's gradient, in the module's order, flattened (missing ones as NaN).
struct GradientValues<'a> {
    gradients: &'a burn::optim::GradientsParams,
    values: Vec<f32>,
}

impl burn::module::ModuleVisitor for GradientValues<'_> {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        match self.gradients.get::<D>(param.id) {
            Some(gradient) => self
                .values
                .extend(host_values(gradient).unwrap_or_else(|_| vec![f32::NAN])),
            None => self.values.push(f32::NAN),
        }
    }
}

/// One training step's numbers on a device's autodiff decorator: the loss (L_simple, or with
/// `min_snr_gamma` its Min-SNR weighting) and, with `gradients`, ∂loss/∂θ of every parameter.
pub(super) fn training_piece<'a>(
    model_file: &'a [u8],
    batch: usize,
    min_snr_gamma: Option<f64>,
    gradients: bool,
) -> Piece<'a> {
    Box::new(move |device: &Device| {
        let training = device.clone().autodiff();
        let (config, model) = emerge_core::weights::from_bytes(model_file.to_vec(), &training)?;
        let schedule = config.noise_schedule()?;
        let loss = emerge_core::training::training_loss(
            &model,
            min_snr_gamma,
            &schedule,
            &training_batch(&config, batch),
            config.unet.sample_size,
            &training,
        )?;
        if !gradients {
            return host_values(loss);
        }
        let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &model);
        let mut visitor = GradientValues {
            gradients: &grads,
            values: Vec::new(),
        };
        model.visit(&mut visitor);
        Ok(visitor.values)
    })
}
