//! `check-devices`: every device this binary can open, held to Flex on the same inputs.
//!
//! Rows run from the smallest piece to the whole run, so that the first failing row names the
//! kernel at fault rather than only a wrong final image: each layer type of the UNet (with the
//! shipped model's own weights), full forward passes, one training step's loss and gradients
//! (through the autodiff decorator), then a whole sampling run (the model's recommended request
//! unless told otherwise) from the same host noise, with every kernel launched each step and with
//! the step recorded once and replayed. Flex is the reference; a device passes a row
//! when its output is within the tolerance. `pieces` builds the rows, `tolerance` judges them,
//! this module runs them and prints the table.

mod pieces;
mod tolerance;

use pieces::{Piece, forward_piece, layer_pieces, training_piece, without_dropout};
pub use tolerance::{FORWARD_TOLERANCE, IMAGE_MAX_TOLERANCE, IMAGE_MEAN_TOLERANCE, Measure};
use tolerance::{compare_pixels, compare_values};

use anyhow::Result;
use burn::module::Module;
use burn::tensor::Device;
use emerge_core::{Model, ModelConfig, SamplingRequest, UNet};

use crate::devices::OpenedDevice;
use crate::sample::{self, Stepping};

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
    let expected = sample::generate(shipped, request, all.clone(), Stepping::Plain, |_| {})?;
    for opened in devices {
        for (stepping, how) in [
            (Stepping::Plain, "kernels launched every step"),
            (Stepping::Recorded, "one recorded step replayed"),
        ] {
            record(opened, &format!("{what} ({how})"), &|device| {
                let got = Model::new(config.clone(), unet.clone().to_device(device))
                    .map_err(anyhow::Error::from)
                    .and_then(|model| {
                        sample::generate(&model, request, all.clone(), stepping, |_| {})
                    })
                    .map(|images| images.values);
                compare_pixels(&expected.values, &got.unwrap_or_default())
            });
        }
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
        // loss and gradients (L_simple, Min-SNR) at each batch, then the run stepped both ways.
        assert_eq!(rows.len(), 2 * 7 + 2 * 2 + 2 * 4 + 2, "{seen:#?}");
        assert!(seen.iter().any(|w| w.starts_with("gradients of Min-SNR-5")));
        assert!(rows[0].what.starts_with("time embedding"));
        for (row, how) in rows[rows.len() - 2..]
            .iter()
            .zip(["launched every", "replayed"])
        {
            let what = &row.what;
            assert!(
                what.starts_with("SDE-DPM-Solver++(2M) 3 steps, w = 1.25") && what.contains(how),
                "{what}"
            );
        }
        for row in &rows {
            assert!(row.measure.passes(), "{}: {:?}", row.what, row.measure);
        }
    }
}
