//! `check-devices`: every device this binary can open, held to Flex on the same inputs.
//!
//! Rows run from the smallest piece to the whole run, so that the first failing row names the
//! kernel at fault rather than only a wrong final image: each layer type of the UNet (with the
//! shipped model's own weights), full forward passes, one training step's loss and gradients
//! (through the autodiff decorator), then a whole sampling run (the model's recommended request
//! unless told otherwise) from the same host noise. Flex is the reference; a device passes a row when its output is within the tolerance.

use anyhow::Result;
use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use emerge_core::image::to_byte;
use emerge_core::unet::timestep_embedding;
use emerge_core::{GaussianNoise, Model, ModelConfig, SamplingRequest, UNet};

use crate::devices::OpenedDevice;
use crate::sample;

/// Forward passes (ε̂ and every layer): max |Δ| ≤ 1e-3 × max(1, RMS of the reference), so 1e-3
/// for ε̂ (unit variance by construction) and relative for layers whose outputs are larger.
pub const FORWARD_TOLERANCE: f64 = 1e-3;
/// Final images, per pixel in 0–255 units: mean |Δ| ≤ 2, max |Δ| ≤ 16.
pub const IMAGE_MEAN_TOLERANCE: f64 = 2.0;
pub const IMAGE_MAX_TOLERANCE: f64 = 16.0;

/// What to run.
#[derive(Debug, Clone)]
pub struct CheckPlan {
    /// Presets whose full forward pass is checked with fresh (seeded) weights; the shipped
    /// model's forward pass is always checked.
    pub presets: Vec<String>,
    pub batches: Vec<usize>,
    /// The sampling run of the shipped model checked last, on every device.
    pub request: SamplingRequest,
}

/// One checked piece on one device.
#[derive(Debug, Clone)]
pub struct CheckRow {
    pub device: String,
    pub what: String,
    pub measure: Measure,
    pub seconds: f64,
}

/// How far a device's output is from Flex's, and the bound it had to stay within.
#[derive(Debug, Clone, Copy)]
pub enum Measure {
    /// Tensor outputs: max |Δ| against `limit` (absolute, scaled by the reference's size).
    Values { max_abs: f64, limit: f64 },
    /// Final images in 0–255 units: mean and max |Δ| per pixel.
    Pixels { mean_abs: f64, max_abs: f64 },
}

impl Measure {
    pub fn passes(&self) -> bool {
        match *self {
            Measure::Values { max_abs, limit } => max_abs <= limit,
            Measure::Pixels { mean_abs, max_abs } => {
                mean_abs <= IMAGE_MEAN_TOLERANCE && max_abs <= IMAGE_MAX_TOLERANCE
            }
        }
    }

    fn difference(&self) -> String {
        match *self {
            Measure::Values { max_abs, .. } => format!("{max_abs:.2e}"),
            Measure::Pixels { mean_abs, max_abs } => {
                format!("{max_abs:.0}/255 (mean {mean_abs:.3}/255)")
            }
        }
    }

    fn tolerance(&self) -> String {
        match *self {
            Measure::Values { limit, .. } => format!("{limit:.2e}"),
            Measure::Pixels { .. } => {
                format!("{IMAGE_MAX_TOLERANCE:.0}/255 (mean {IMAGE_MEAN_TOLERANCE:.0}/255)")
            }
        }
    }
}

/// Max |a − b| of two equally long value lists, and the tolerance scaled to the reference.
fn compare_values(reference: &[f32], other: &[f32]) -> Measure {
    let mean_square = reference.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>()
        / reference.len().max(1) as f64;
    let scale = mean_square.sqrt().max(1.0);
    let max_abs = if reference.len() == other.len() {
        reference
            .iter()
            .zip(other)
            .map(|(&a, &b)| f64::from(a - b).abs())
            .fold(0.0f64, |m, d| {
                if d.is_nan() || m.is_nan() {
                    f64::NAN
                } else {
                    m.max(d)
                }
            })
    } else {
        f64::INFINITY
    };
    Measure::Values {
        // A NaN anywhere is a failure, never a pass: report it as infinitely far.
        max_abs: if max_abs.is_nan() {
            f64::INFINITY
        } else {
            max_abs
        },
        limit: FORWARD_TOLERANCE * scale,
    }
}

/// Mean and max per-pixel |Δ| of two image sets in model space, as 0–255 bytes.
fn compare_pixels(reference: &[f32], other: &[f32]) -> Measure {
    if reference.len() != other.len() || reference.is_empty() {
        return Measure::Pixels {
            mean_abs: f64::INFINITY,
            max_abs: f64::INFINITY,
        };
    }
    let (mut sum, mut max) = (0.0f64, 0.0f64);
    for (&a, &b) in reference.iter().zip(other) {
        let d = if a.is_finite() && b.is_finite() {
            f64::from((i16::from(to_byte(a)) - i16::from(to_byte(b))).abs())
        } else {
            f64::INFINITY
        };
        sum += d;
        max = max.max(d);
    }
    Measure::Pixels {
        mean_abs: sum / reference.len() as f64,
        max_abs: max,
    }
}

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
type Piece<'a> = Box<dyn Fn(&Device) -> Result<Vec<f32>> + 'a>;

/// The layer-by-layer pieces of `unet` (the shipped model), at `batch`.
fn layer_pieces<'a>(
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
            "group norm ({} channels, {} groups), batch {batch}",
            ch[0], c.norm_num_groups
        ),
        Box::new(move |device: &Device| {
            let norm = unet.conv_norm_out.clone().to_device(device);
            host_values(norm.forward(normal([batch, ch[0], size, size], seed + 1, device)))
        }),
    ));
    if let Some(block) = unet.down_blocks.get(1) {
        let (cin, cout, res) = (ch[0], ch[1], c.resolution(1));
        pieces.push((
            format!("resnet block ({cin}→{cout}, {res}×{res}), batch {batch}"),
            Box::new(move |device: &Device| {
                let resnet = block.resnets[0].clone().to_device(device);
                let x = normal([batch, cin, res, res], seed + 2, device);
                host_values(resnet.forward(x, normal([batch, temb_dim], seed + 3, device)))
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
fn forward_piece<'a>(unet: &'a UNet, config: &'a ModelConfig, batch: usize) -> Piece<'a> {
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
fn without_dropout(unet: &UNet, config: &ModelConfig) -> Result<Vec<u8>> {
    let mut config = config.clone();
    config.unet.dropout = 0.0;
    Ok(emerge_core::weights::to_bytes(
        unet,
        &config,
        emerge_core::weights::Precision::F32,
    )?)
}

/// A training batch from host draws: x_0 in [−1, 1], labels, timesteps spread over [0, T), ε.
fn training_batch(config: &ModelConfig, batch: usize) -> crate::train::Batch {
    let c = &config.unet;
    let len = batch * c.in_channels * c.sample_size * c.sample_size;
    let mut rng = GaussianNoise::new(3000 + batch as u64);
    let t_max = config.schedule.num_train_timesteps;
    crate::train::Batch {
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
fn training_piece<'a>(
    model_file: &'a [u8],
    batch: usize,
    min_snr_gamma: Option<f64>,
    gradients: bool,
) -> Piece<'a> {
    Box::new(move |device: &Device| {
        let training = device.clone().autodiff();
        let (config, model) = emerge_core::weights::from_bytes(model_file.to_vec(), &training)?;
        let schedule = config.noise_schedule()?;
        let loss = crate::train::training_loss(
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

/// Runs every row on every device in `devices` (Flex, the reference, is not in it).
/// `on_row` sees each row as it finishes, for printing progress.
pub fn run(
    plan: &CheckPlan,
    shipped: &Model,
    devices: &[OpenedDevice],
    mut on_row: impl FnMut(&CheckRow),
) -> Result<Vec<CheckRow>> {
    let (config, unet) = (&shipped.config, &shipped.unet);
    let reference = Device::flex();
    let fresh: Vec<(String, ModelConfig, UNet)> = plan
        .presets
        .iter()
        .map(|name| {
            let preset = ModelConfig::preset(name)?;
            reference.seed(7);
            let net = UNet::new(&preset.unet, &reference)?;
            Ok((name.clone(), preset, net))
        })
        .collect::<Result<_>>()?;
    let trainable = without_dropout(unet, config)?;
    let mut pieces: Vec<(String, Piece)> = Vec::new();
    for &batch in &plan.batches {
        pieces.extend(layer_pieces(unet, config, batch));
    }
    for &batch in &plan.batches {
        pieces.push((
            format!("forward, shipped model, batch {batch}"),
            forward_piece(unet, config, batch),
        ));
    }
    for (name, preset, net) in &fresh {
        for &batch in &plan.batches {
            pieces.push((
                format!("forward, {name} (fresh weights), batch {batch}"),
                forward_piece(net, preset, batch),
            ));
        }
    }
    // Training: the loss through the autodiff decorator, then its gradients (backward).
    for &batch in &plan.batches {
        for (gamma, loss_name) in [(None, "L_simple"), (Some(5.0), "Min-SNR-5")] {
            pieces.push((
                format!("training loss ({loss_name}, autodiff), shipped model, batch {batch}"),
                training_piece(&trainable, batch, gamma, false),
            ));
            pieces.push((
                format!("gradients of {loss_name} (backward), shipped model, batch {batch}"),
                training_piece(&trainable, batch, gamma, true),
            ));
        }
    }

    let mut rows = Vec::new();
    let mut record = |opened: &OpenedDevice, what: &str, measure: &dyn Fn(&Device) -> Measure| {
        let started = std::time::Instant::now();
        let row = CheckRow {
            device: opened.label.clone(),
            what: what.to_string(),
            // A kernel that panics (cubecl reports device errors so) fails its row: the
            // rows before it have been printed, so the table still says where it broke.
            measure: std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                measure(&opened.device)
            }))
            .unwrap_or(Measure::Values {
                max_abs: f64::INFINITY,
                limit: FORWARD_TOLERANCE,
            }),
            seconds: started.elapsed().as_secs_f64(),
        };
        on_row(&row);
        rows.push(row);
    };
    for (what, piece) in &pieces {
        let expected = piece(&reference)?;
        for opened in devices {
            // A device that fails to run the piece at all is as far off as can be.
            record(opened, what, &|device| {
                compare_values(&expected, &piece(device).unwrap_or_default())
            });
        }
    }

    // The whole reverse process, from the same seeded host noise.
    let request = &plan.request;
    let guidance = match request.classes {
        emerge_core::Classes::Unconditional => String::new(),
        _ => format!(", w = {}", request.guidance.scale),
    };
    let what = format!(
        "{} {} steps{guidance}, {} images, final pixels",
        request.sampler, request.steps, request.images
    );
    let all = 0..request.images;
    let expected = sample::generate(shipped, request, all.clone(), |_| {})?;
    for opened in devices {
        record(opened, &what, &|device| {
            let got = Model::new(config.clone(), unet.clone().to_device(device))
                .map_err(anyhow::Error::from)
                .and_then(|model| sample::generate(&model, request, all.clone(), |_| {}))
                .map(|images| images.values);
            compare_pixels(&expected.values, &got.unwrap_or_default())
        });
    }
    Ok(rows)
}

/// The table header and one table line per row (Markdown; the pipes of |Δ| are escaped, or they
/// would split the cell).
pub const TABLE_HEADER: &str = "| device | what | max \\|Δ\\| against Flex | tolerance | seconds | verdict |\n| --- | --- | --- | --- | --- | --- |";

pub fn table_line(row: &CheckRow) -> String {
    format!(
        "| {} | {} | {} | {} | {:.2} | {} |",
        row.device,
        row.what,
        row.measure.difference(),
        row.measure.tolerance(),
        row.seconds,
        if row.measure.passes() { "pass" } else { "FAIL" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_pass_within_a_tolerance_scaled_to_the_reference() {
        assert!(compare_values(&[0.5, -0.25], &[0.5005, -0.25]).passes());
        assert!(!compare_values(&[0.5, -0.25], &[0.502, -0.25]).passes());
        // Outputs of RMS 10 may differ by 10 × 1e-3.
        assert!(compare_values(&[10.0, -10.0], &[10.009, -10.0]).passes());
        assert!(!compare_values(&[10.0, -10.0], &[10.011, -10.0]).passes());
    }

    /// The cells of a Markdown table line (a pipe escaped as `\|` stays in its cell).
    fn cells(line: &str) -> usize {
        line.replace("\\|", "").matches('|').count() - 1
    }

    #[test]
    fn the_table_has_as_many_cells_in_every_line() {
        let row = CheckRow {
            device: "Flex (CPU)".into(),
            what: "final images".into(),
            measure: compare_pixels(&[0.0, 1.0], &[0.0, 0.9]),
            seconds: 1.0,
        };
        let lines: Vec<String> = TABLE_HEADER
            .lines()
            .map(str::to_owned)
            .chain([table_line(&row)])
            .collect();
        assert!(lines.iter().all(|line| cells(line) == 6), "{lines:#?}");
    }

    #[test]
    fn a_nan_or_a_missing_value_never_passes() {
        assert!(!compare_values(&[0.0, 1.0], &[0.0, f32::NAN]).passes());
        assert!(!compare_values(&[0.0, 1.0], &[0.0]).passes());
        assert!(!compare_pixels(&[0.0, 1.0], &[0.0, f32::NAN]).passes());
        assert!(!compare_pixels(&[0.0, 1.0], &[]).passes());
    }

    #[test]
    fn flex_held_to_itself_passes_every_row_in_order() {
        let device = Device::flex();
        let config = ModelConfig::preset("tiny").unwrap();
        let unet = UNet::new(&config.unet, &device).unwrap();
        let plan = CheckPlan {
            presets: vec!["tiny".into()],
            batches: vec![1, 3],
            request: SamplingRequest {
                sampler: emerge_core::SamplerKind::SdeDpmSolver2M,
                steps: 3,
                seed: 5,
                images: 2,
                classes: emerge_core::Classes::EachInTurn,
                guidance: emerge_core::Guidance::everywhere(1.25),
                start: None,
            },
        };
        let itself = OpenedDevice::cpu();
        let mut seen = Vec::new();
        let shipped = Model::new(config, unet).unwrap();
        let rows = run(&plan, &shipped, std::slice::from_ref(&itself), |row| {
            seen.push(row.what.clone())
        })
        .unwrap();
        // Every layer type at each batch, the two forward passes at each batch, the training
        // loss and gradients (L_simple, Min-SNR) at each batch, then the run.
        assert_eq!(rows.len(), 2 * 7 + 2 * 2 + 2 * 4 + 1, "{seen:#?}");
        assert!(seen.iter().any(|w| w.starts_with("gradients of Min-SNR-5")));
        assert!(rows[0].what.starts_with("time embedding"));
        let last = &rows.last().unwrap().what;
        assert!(
            last.starts_with("SDE-DPM-Solver++(2M) 3 steps, w = 1.25"),
            "{last}"
        );
        for row in &rows {
            assert!(row.measure.passes(), "{}: {:?}", row.what, row.measure);
        }
    }

    #[test]
    fn pixels_fail_on_one_far_pixel_or_on_a_small_shift_everywhere() {
        let reference = vec![0.0f32; 100];
        // One pixel 20/255 off: the mean is fine, the max is not.
        let mut one_far = reference.clone();
        one_far[3] = 40.0 / 255.0;
        assert!(!compare_pixels(&reference, &one_far).passes());
        // Every pixel 3/255 off: each is small, the mean is not.
        let shifted = vec![6.0f32 / 255.0; 100];
        assert!(!compare_pixels(&reference, &shifted).passes());
        let close = vec![2.0f32 / 255.0; 100];
        assert!(compare_pixels(&reference, &close).passes());
    }
}
