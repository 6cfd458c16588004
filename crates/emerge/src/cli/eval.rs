//! `emerge eval`: the model's quality numbers (Fréchet distance, accuracy).

use anyhow::Result;
use emerge_core::Classes;

use super::args::EvalArgs;

pub fn run(args: EvalArgs) -> Result<()> {
    anyhow::ensure!(
        args.count >= 2 && args.count <= 60_000,
        "--count must be 2 to 60000"
    );
    anyhow::ensure!(args.batch >= 1, "--batch must be at least 1");
    let opened = crate::devices::open(args.device.choice)?;
    let model = crate::model_file::load(args.model.as_deref(), &opened.device)?;
    let classes = Classes::all_of(&model.config);
    let settings = crate::eval::EvalSettings {
        request: args
            .request
            .request(&model, args.count, classes, args.seed)?,
        measured: args.measure,
        batch: args.batch,
    };
    let report = crate::eval::evaluate(
        &model,
        &args.data,
        args.classifier.as_deref(),
        settings,
        &opened,
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
