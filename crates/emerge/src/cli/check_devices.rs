//! `emerge check-devices`: every device this binary opens, held to Flex.

use anyhow::{Result, bail};
use burn::tensor::Device;

use super::args::CheckArgs;

pub fn run(args: CheckArgs) -> Result<()> {
    anyhow::ensure!(args.images >= 1, "--images must be at least 1");
    anyhow::ensure!(
        !args.batches.is_empty() && !args.batches.contains(&0),
        "--batches must list sizes of at least 1"
    );
    let model = crate::model_file::load(args.model.as_deref(), &Device::flex())?;
    let classes = emerge_core::Classes::all_of(&model.config);
    let request = args
        .request
        .request(&model, args.images, classes, args.seed)?;
    let (devices, missing) = crate::devices::available();
    for reason in &missing {
        println!("not checked: {reason}");
    }
    let others = &devices[1..];
    if others.is_empty() {
        anyhow::ensure!(!args.require_gpu, "--require-gpu: {}", missing.join("; "));
        println!("no device besides Flex (the reference) to check");
        return Ok(());
    }
    let plan = crate::check::CheckPlan {
        presets: args.presets,
        batches: args.batches,
        request,
    };
    println!("{}", crate::check::TABLE_HEADER);
    let rows = crate::check::run(&plan, &model, others, |row| {
        println!("{}", crate::check::table_line(row));
    })?;
    let failed: Vec<_> = rows.iter().filter(|r| !r.measure.passes()).collect();
    match failed.first() {
        None => {
            println!("all {} rows within tolerance", rows.len());
            Ok(())
        }
        Some(first) => bail!(
            "{} of {} rows over tolerance; the first: {} · {}",
            failed.len(),
            rows.len(),
            first.device,
            first.what
        ),
    }
}
