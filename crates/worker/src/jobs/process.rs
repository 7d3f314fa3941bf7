//! Process jobs: ffmpeg on a file inside the storage root, into
//! `processed/<task_id>/`. The input is re-probed (it may have changed since the
//! API checked it) and the plan re-made; the output is written under a temporary
//! name, re-probed and checked against the plan, and only then renamed into place.
//! Any failure removes the partial output.

use std::path::{Path, PathBuf};

use mediapro_core::{
    ffmpeg::{self, ProcessArgs, ProcessPlan, ffmpeg_reason, parse_progress_line, verify_output},
    process::{self, ChildCommand},
    requests::ProcessSpec,
    task::Phase,
    validate::MediaPath,
};

use super::{
    attempt::{Attempt, Supervisor},
    fsutil::reset_dir,
    outcome::Outcome,
};
use crate::context::JobContext;

pub async fn run(ctx: &JobContext, attempt: &Attempt, spec: &ProcessSpec) -> Outcome {
    let settings = &ctx.settings;
    let input = match MediaPath::resolve(&ctx.layout, &spec.input_file).await {
        Ok(p) => p,
        Err(e) => return Outcome::Failed(format!("{e} (is the storage root shared with this worker?)")),
    };
    let reusable = match &spec.probed {
        Some(p) => p.still_valid_for(&input.absolute).await.cloned(),
        None => None,
    };
    let probe = match reusable {
        Some(p) => p,
        None => match ffmpeg::probe(&settings.tools.ffprobe, &input.absolute).await {
            Ok(p) => p,
            Err(e) => return Outcome::Failed(e.to_string()),
        },
    };
    let plan = match ProcessPlan::new(&spec.operations, &probe) {
        Ok(p) => p,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let dir = ctx.layout.processed_dir(attempt.task_id);
    if let Err(e) = reset_dir(&dir).await {
        return Outcome::Transient(format!("cannot prepare the task folder: {e}"));
    }
    let stem = output_stem(&input.absolute);
    let ext = plan.container.ext();
    let temp = dir.join(format!(".{stem}.part.{ext}"));
    let target = dir.join(format!("{stem}.{ext}"));
    let outcome = encode(ctx, attempt, &input.absolute, &temp, &target, &plan).await;
    if outcome.discards_files() {
        let _ = tokio::fs::remove_dir_all(&dir).await;
    }
    outcome
}

async fn encode(
    ctx: &JobContext,
    attempt: &Attempt,
    input: &Path,
    temp: &Path,
    target: &PathBuf,
    plan: &ProcessPlan,
) -> Outcome {
    let settings = &ctx.settings;
    let args = ProcessArgs {
        input,
        output: temp,
        plan,
        max_output_bytes: settings.limits.max_file_size_bytes,
        threads: settings.limits.ffmpeg_threads,
    }
    .to_args();
    let mut command = ChildCommand::new(&settings.tools.ffmpeg, args, settings.task_timeout());
    command.memory_limit_bytes = Some(settings.limits.ffmpeg_max_memory_bytes).filter(|b| *b > 0);
    let supervisor = Supervisor::new();
    supervisor.phase(Phase::Encoding);
    let expected = plan.expected_duration.filter(|d| *d > 0.0);
    let result = process::run(
        &command,
        |line| {
            supervisor.touch();
            if let (Some(pos), Some(total)) = (parse_progress_line(line), expected) {
                supervisor.report((pos / total * 100.0).clamp(0.0, 99.0));
            }
        },
        supervisor.watch(ctx, attempt),
    )
    .await;
    match result {
        Err(e) => return Outcome::from_run_error(e, "ffmpeg", &ctx.metrics),
        Ok(out) if !out.status.success() => {
            return Outcome::Failed(format!("ffmpeg failed: {}", ffmpeg_reason(&out.stderr_tail)));
        }
        Ok(_) => {}
    }
    supervisor.phase(Phase::Verifying);
    let output = match ffmpeg::probe(&settings.tools.ffprobe, temp).await {
        Ok(p) => p,
        Err(e) => return Outcome::Failed(format!("ffmpeg produced no usable output: {e}")),
    };
    if let Err(e) = verify_output(plan, &output) {
        return Outcome::Failed(format!("output check failed: {e}"));
    }
    if let Err(e) = tokio::fs::rename(temp, target).await {
        return Outcome::Transient(format!("cannot move the output into place: {e}"));
    }
    match ctx.layout.relative(target) {
        Some(rel) => Outcome::Completed { files: Vec::new(), output: Some(rel) },
        None => Outcome::Failed("output path is outside the storage root".into()),
    }
}

/// The input's file stem, made safe for a file name.
fn output_stem(input: &Path) -> String {
    let stem: String = input
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("output")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
        .take(100)
        .collect();
    let stem = stem.trim_start_matches('.');
    if stem.is_empty() { "output".into() } else { stem.to_owned() }
}
