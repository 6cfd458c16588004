//! `emerge eval`: the model's quality numbers (Fréchet distance, accuracy).

use anyhow::Result;
use emerge_core::SamplerKind;

use super::args::{EvalArgs, SamplerChoice};

pub fn run(args: EvalArgs) -> Result<()> {
    anyhow::ensure!(
        args.count >= 2 && args.count <= 60_000,
        "--count must be 2 to 60000"
    );
    let sampler = match args.sampler {
        SamplerChoice::Ddpm => SamplerKind::Ddpm,
        SamplerChoice::Ddim => SamplerKind::Ddim { eta: args.eta },
    };
    let settings = crate::eval::EvalSettings {
        count: args.count,
        measured: args.measure,
        sampler,
        steps: args.steps,
        guidance: args.guidance.guidance,
        guidance_interval: args.guidance.guidance_interval.0,
        seed: args.seed,
        batch: args.batch,
    };
    let report = crate::eval::evaluate(
        args.model.as_deref(),
        &args.data,
        args.classifier.as_deref(),
        settings,
        &crate::devices::open(args.device.choice)?,
    )?;
    print!("{}", crate::eval::table(&report));
    if let Some(path) = args.json {
        emerge_core::atomic_file::write_atomically(
            &path,
            serde_json::to_string_pretty(&report)?.as_bytes(),
        )?;
    }
    Ok(())
}
