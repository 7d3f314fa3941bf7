//! Latency benchmark of `GET /api/tasks` (`TaskStore::list`, through the public API) on
//! a large task table. It exists because a filter without a usable index (a kind
//! matching nothing, say) used to scan every row; this fills a fresh store with N
//! tasks and times every documented filter, their combinations and deep pages, so a
//! regression shows up as a p99 figure.
//!
//! Usage: `cargo run --release -p mediapro-core --example list_bench -- --store sqlite|postgres
//! [--tasks 1000000] [--runs 200] [--warmup 10] [--budget-secs 10] [--no-analyze] [--keep]
//! [--pg-url postgres://postgres@127.0.0.1:5432/test]`. `bench/list_bench.sh` runs it for
//! both stores.
//!
//! The fill is deterministic (fixed seed, fixed time base), so two runs on different
//! schemas return the same pages: the `check` column (a hash of the first page) must
//! match between them. After the fill the bench runs `ANALYZE` (as a maintained
//! database would have statistics); `--no-analyze` skips it. A case stops early once it
//! has run `--budget-secs` seconds (at least 20 timed runs), so a slow "before" run
//! stays short; `n` says how many runs were timed.

use std::time::{Duration, Instant};
use strum::IntoEnumIterator;

use mediapro_core::{
    store::{Cursor, TaskFilter, TaskStore},
    task::{TaskKind, TaskRequest, TaskStatus},
};
use sqlx::{AnyPool, Executor, any::AnyPoolOptions};
use time::OffsetDateTime;

const COLUMNS: &str = "task_id, kind, status, progress, created_at, started_at, completed_at, updated_at, \
    request, downloaded_files, output_file, error, attempts, worker, parent_task_id, next_task_id, job_id";
const NCOLS: usize = 17;
/// Rows per INSERT statement (17 binds each: well under both engines' limits).
const ROWS_PER_INSERT: usize = 500;
/// Rows per transaction.
const ROWS_PER_TX: usize = 50_000;
/// 2026-11-01T00:00:00Z, in µs: the oldest task; the newest is 30 days later.
const BASE_MICROS: i64 = 1_793_491_200_000_000;
const DAY_MICROS: i64 = 86_400_000_000;
const HOUR_MICROS: i64 = 3_600_000_000;
const SPAN_MICROS: i64 = 30 * DAY_MICROS;

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

struct Args {
    store: String,
    tasks: usize,
    runs: usize,
    warmup: usize,
    budget: Duration,
    analyze: bool,
    keep: bool,
    pg_url: String,
}

fn parse_args() -> AnyResult<Args> {
    let mut a = Args {
        store: "sqlite".into(),
        tasks: 1_000_000,
        runs: 200,
        warmup: 10,
        budget: Duration::from_secs(10),
        analyze: true,
        keep: false,
        pg_url: "postgres://postgres@127.0.0.1:5432/test".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--store" => a.store = value()?,
            "--tasks" => a.tasks = value()?.parse()?,
            "--runs" => a.runs = value()?.parse()?,
            "--warmup" => a.warmup = value()?.parse()?,
            "--budget-secs" => a.budget = Duration::from_secs(value()?.parse()?),
            "--pg-url" => a.pg_url = value()?,
            "--no-analyze" => a.analyze = false,
            "--keep" => a.keep = true,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if a.store != "sqlite" && a.store != "postgres" {
        return Err("--store must be sqlite or postgres".into());
    }
    Ok(a)
}

/// SplitMix64: a deterministic fill without a `rand` dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn uuid(&mut self) -> uuid::Uuid {
        let v = (u128::from(self.next()) << 64) | u128::from(self.next());
        uuid::Builder::from_random_bytes(v.to_be_bytes()).into_uuid()
    }
}

/// One row of `tasks`, in [`COLUMNS`] order.
struct Row {
    task_id: String,
    kind: &'static str,
    status: &'static str,
    progress: f64,
    created_at: i64,
    started_at: Option<i64>,
    completed_at: Option<i64>,
    request: String,
    downloaded_files: String,
    output_file: Option<String>,
    error: Option<String>,
    attempts: i64,
    worker: Option<String>,
    job_id: String,
}

fn download_request(i: usize) -> String {
    format!(r#"{{"kind":"download","url":"https://media.example.com/watch?v=clip{i}"}}"#)
}

fn process_request(i: usize) -> String {
    format!(
        r#"{{"kind":"process","input_file":"uploads/clip{i}.mp4","operations":{{"trim":null,"resize":{{"width":1280,"height":null}},"quality":23,"fps":null,"format":null,"audio_only":false,"copy":false}}}}"#
    )
}

/// The i-th task: kinds 70 % download / 30 % process; statuses 90.5 % completed, 5 %
/// failed, 3 % cancelled, 1 % pending, 0.5 % running (the kind's running status),
/// spread over the whole period; created_at spread evenly over 30 days with jitter
/// (every 1000th task shares its predecessor's timestamp, to exercise the task_id
/// tie-break).
fn make_row(rng: &mut Rng, i: usize, n: usize, prev_created: i64) -> Row {
    let task_id = rng.uuid().to_string();
    let kind = if rng.below(100) < 70 { TaskKind::Download } else { TaskKind::Process };
    let roll = rng.below(1000);
    let status = match roll {
        0..905 => TaskStatus::Completed,
        905..955 => TaskStatus::Failed,
        955..985 => TaskStatus::Cancelled,
        985..995 => TaskStatus::Pending,
        _ => kind.running_status(),
    };
    let step = SPAN_MICROS / n.max(1) as i64;
    let created_at = if i % 1000 == 999 {
        prev_created
    } else {
        (BASE_MICROS + i as i64 * step + rng.below(step.max(1) as u64 / 2) as i64).max(prev_created)
    };
    let started = (status != TaskStatus::Pending).then_some(created_at + 1_000_000);
    let completed = status.is_final().then_some(created_at + 20_000_000);
    let (request, files, output) = match kind {
        TaskKind::Download => {
            let files = if status == TaskStatus::Completed {
                format!(r#"["downloads/{task_id}/clip{i}.mp4"]"#)
            } else {
                "[]".into()
            };
            (download_request(i), files, None)
        }
        TaskKind::Process => {
            let out = (status == TaskStatus::Completed).then(|| format!("processed/{task_id}.mp4"));
            (process_request(i), "[]".into(), out)
        }
    };
    Row {
        kind: kind.as_str(),
        status: status.as_str(),
        progress: if status == TaskStatus::Completed { 100.0 } else { 0.0 },
        created_at,
        started_at: started,
        completed_at: completed,
        request,
        downloaded_files: files,
        output_file: output,
        error: (status == TaskStatus::Failed).then(|| "yt-dlp exited with status 1".into()),
        attempts: i64::from(status != TaskStatus::Pending),
        worker: started.map(|_| "worker-1".into()),
        job_id: format!("01JBENCH{i:018}"),
        task_id,
    }
}

fn insert_sql(rows: usize) -> String {
    let mut sql = format!("INSERT INTO tasks ({COLUMNS}) VALUES ");
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..NCOLS {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", r * NCOLS + c + 1));
        }
        sql.push(')');
    }
    sql
}

async fn fill(pool: &AnyPool, n: usize) -> AnyResult<()> {
    let mut rng = Rng(0x05EE_D0F1_11A7);
    let mut prev = BASE_MICROS;
    let mut i = 0;
    let full_sql = insert_sql(ROWS_PER_INSERT);
    while i < n {
        let mut tx = pool.begin().await?;
        let tx_end = (i + ROWS_PER_TX).min(n);
        while i < tx_end {
            let m = ROWS_PER_INSERT.min(tx_end - i);
            let rows: Vec<Row> = (i..i + m)
                .map(|k| {
                    let r = make_row(&mut rng, k, n, prev);
                    prev = r.created_at;
                    r
                })
                .collect();
            let sql = if m == ROWS_PER_INSERT { full_sql.clone() } else { insert_sql(m) };
            let mut q = sqlx::query(&sql);
            for r in rows {
                q = q
                    .bind(r.task_id)
                    .bind(r.kind)
                    .bind(r.status)
                    .bind(r.progress)
                    .bind(r.created_at)
                    .bind(r.started_at)
                    .bind(r.completed_at)
                    .bind(r.created_at)
                    .bind(r.request)
                    .bind(r.downloaded_files)
                    .bind(r.output_file)
                    .bind(r.error)
                    .bind(r.attempts)
                    .bind(r.worker)
                    .bind(None::<String>)
                    .bind(None::<String>)
                    .bind(r.job_id);
            }
            q.execute(&mut *tx).await?;
            i += m;
        }
        tx.commit().await?;
    }
    Ok(())
}

struct Case {
    name: String,
    filter: TaskFilter,
}

fn at(m: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(m) * 1000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn f() -> TaskFilter {
    TaskFilter { limit: 20, ..TaskFilter::default() }
}

fn statuses(list: &[TaskStatus]) -> TaskFilter {
    TaskFilter { statuses: list.to_vec(), ..f() }
}

fn mid_cursor() -> AnyResult<Cursor> {
    // Just below the middle timestamp, with the highest task_id: starts mid-table.
    Ok(Cursor::parse(&format!("{}_ffffffff-ffff-4fff-bfff-ffffffffffff", BASE_MICROS + SPAN_MICROS / 2))?)
}

/// The cursor after `pages` pages of `filter`.
async fn cursor_after(store: &TaskStore, filter: &TaskFilter, pages: usize) -> AnyResult<Cursor> {
    let mut f = filter.clone();
    for _ in 0..pages {
        let page = store.list(&f).await?;
        f.cursor = Some(page.next_cursor.ok_or("ran out of pages")?);
    }
    Ok(f.cursor.ok_or("no cursor")?)
}

async fn main_cases(store: &TaskStore) -> AnyResult<Vec<Case>> {
    use TaskStatus::*;
    let mid = BASE_MICROS + SPAN_MICROS / 2;
    let narrow = (Some(at(mid)), Some(at(mid + HOUR_MICROS)));
    let wide_after = Some(at(BASE_MICROS + 15 * DAY_MICROS));
    let old_before = Some(at(BASE_MICROS + DAY_MICROS));
    let running = [Pending, Downloading, Processing];
    let done = [Completed, Failed];
    let mut cases = vec![Case { name: "no filter".into(), filter: f() }];
    for s in TaskStatus::iter() {
        cases.push(Case { name: format!("status={s}"), filter: statuses(&[s]) });
    }
    cases.push(Case { name: "status=pending,downloading,processing".into(), filter: statuses(&running) });
    cases.push(Case { name: "status=completed,failed".into(), filter: statuses(&done) });
    for k in TaskKind::iter() {
        cases
            .push(Case { name: format!("kind={}", k.as_str()), filter: TaskFilter { kind: Some(k), ..f() } });
    }
    let kp = Some(TaskKind::Process);
    let kd = Some(TaskKind::Download);
    let more = [
        ("kind=process&status=downloading (none)", TaskFilter { kind: kp, ..statuses(&[Downloading]) }),
        ("kind=download&status=failed", TaskFilter { kind: kd, ..statuses(&[Failed]) }),
        ("kind=process&status=pending", TaskFilter { kind: kp, ..statuses(&[Pending]) }),
        ("kind=process&status=pending,downloading,processing", TaskFilter { kind: kp, ..statuses(&running) }),
        ("kind=download&status=completed,failed", TaskFilter { kind: kd, ..statuses(&done) }),
        ("window 1h (after+before)", TaskFilter { created_after: narrow.0, created_before: narrow.1, ..f() }),
        ("created_after=15 days ago", TaskFilter { created_after: wide_after, ..f() }),
        ("created_before=oldest day", TaskFilter { created_before: old_before, ..f() }),
        (
            "kind=process&window 1h",
            TaskFilter { kind: kp, created_after: narrow.0, created_before: narrow.1, ..f() },
        ),
        (
            "kind=download&created_before=oldest day",
            TaskFilter { kind: kd, created_before: old_before, ..f() },
        ),
        ("kind=process&created_after=15 days ago", TaskFilter { kind: kp, created_after: wide_after, ..f() }),
        (
            "status=failed&window 1h",
            TaskFilter { created_after: narrow.0, created_before: narrow.1, ..statuses(&[Failed]) },
        ),
        (
            "status=pending,downloading,processing&created_before=oldest day",
            TaskFilter { created_before: old_before, ..statuses(&running) },
        ),
        (
            "kind=process&status=failed&created_after=15 days ago",
            TaskFilter { kind: kp, created_after: wide_after, ..statuses(&[Failed]) },
        ),
        ("limit=100", TaskFilter { limit: 100, ..f() }),
        ("limit=100&status=completed,failed", TaskFilter { limit: 100, ..statuses(&done) }),
    ];
    cases.extend(more.into_iter().map(|(n, filter)| Case { name: n.into(), filter }));
    // Deep pages: follow 50 pages of cursors, then time the 51st page.
    let deep = [
        ("page 51, no filter", f()),
        ("page 51, kind=process", TaskFilter { kind: kp, ..f() }),
        ("page 51, status=completed,failed", statuses(&done)),
        ("page 51, status=pending,downloading,processing", statuses(&running)),
    ];
    for (name, filter) in deep {
        let cursor = Some(cursor_after(store, &filter, 50).await?);
        cases.push(Case { name: name.into(), filter: TaskFilter { cursor, ..filter } });
    }
    let c = Some(mid_cursor()?);
    let middle = [
        ("mid cursor, no filter", f()),
        ("mid cursor, kind=process", TaskFilter { kind: kp, ..f() }),
        ("mid cursor, status=pending,downloading,processing", statuses(&running)),
        ("mid cursor, kind=download&status=failed", TaskFilter { kind: kd, ..statuses(&[Failed]) }),
    ];
    cases.extend(
        middle
            .into_iter()
            .map(|(n, filter)| Case { name: n.into(), filter: TaskFilter { cursor: c.clone(), ..filter } }),
    );
    Ok(cases)
}

fn empty_kind_cases() -> AnyResult<Vec<Case>> {
    let kp = Some(TaskKind::Process);
    let mid = BASE_MICROS + SPAN_MICROS / 2;
    Ok(vec![
        Case { name: "[no process rows] kind=process".into(), filter: TaskFilter { kind: kp, ..f() } },
        Case {
            name: "[no process rows] kind=process&status=completed".into(),
            filter: TaskFilter { kind: kp, ..statuses(&[TaskStatus::Completed]) },
        },
        Case {
            name: "[no process rows] kind=process&status=completed,failed".into(),
            filter: TaskFilter { kind: kp, ..statuses(&[TaskStatus::Completed, TaskStatus::Failed]) },
        },
        Case {
            name: "[no process rows] kind=process&created_after=mid".into(),
            filter: TaskFilter { kind: kp, created_after: Some(at(mid)), ..f() },
        },
        Case {
            name: "[no process rows] kind=process, mid cursor".into(),
            filter: TaskFilter { kind: kp, cursor: Some(mid_cursor()?), ..f() },
        },
        Case {
            name: "[no process rows] kind=download".into(),
            filter: TaskFilter { kind: Some(TaskKind::Download), ..f() },
        },
    ])
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx].as_secs_f64() * 1000.0
}

/// FNV-1a of the page's task ids: equal pages give equal checks.
fn check(ids: &[String]) -> u32 {
    let mut h: u32 = 0x811C_9DC5;
    for b in ids.iter().flat_map(|s| s.bytes().chain(std::iter::once(b','))) {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h
}

async fn time_cases(store: &TaskStore, label: &str, cases: &[Case], a: &Args) -> AnyResult<()> {
    for case in cases {
        let first = store.list(&case.filter).await?;
        let ids: Vec<String> = first.tasks.iter().map(|t| t.task_id.to_string()).collect();
        for _ in 0..a.warmup {
            store.list(&case.filter).await?;
        }
        let mut times = Vec::with_capacity(a.runs);
        let started = Instant::now();
        while times.len() < a.runs && (times.len() < 20 || started.elapsed() < a.budget) {
            let t = Instant::now();
            let page = store.list(&case.filter).await?;
            times.push(t.elapsed());
            std::hint::black_box(page);
        }
        times.sort();
        println!(
            "| {label} | {} | {} | {:.3} | {:.3} | {} | {:08x} |",
            case.name,
            times.len(),
            percentile(&times, 0.50),
            percentile(&times, 0.99),
            ids.len(),
            check(&ids)
        );
    }
    Ok(())
}

async fn analyze(pool: &AnyPool, sqlite: bool) -> AnyResult<()> {
    if sqlite {
        pool.execute("ANALYZE").await?;
    } else {
        pool.execute("ANALYZE tasks").await?;
    }
    Ok(())
}

async fn run(a: &Args, url: &str) -> AnyResult<()> {
    let sqlite = a.store == "sqlite";
    let store = TaskStore::connect(url, 4).await?;
    store.migrate().await?;
    let pool = AnyPoolOptions::new().max_connections(1).connect(url).await?;
    if sqlite {
        // A large page cache: the random task_id keys otherwise thrash the default 2 MB.
        pool.execute("PRAGMA synchronous=OFF; PRAGMA cache_size=-400000").await?;
    }
    // The fixtures must decode as the store expects.
    serde_json::from_str::<TaskRequest>(&download_request(0))?;
    serde_json::from_str::<TaskRequest>(&process_request(0))?;

    let t = Instant::now();
    fill(&pool, a.tasks).await?;
    eprintln!("{}: filled {} tasks in {:.1} s", a.store, a.tasks, t.elapsed().as_secs_f64());
    if a.analyze {
        let t = Instant::now();
        analyze(&pool, sqlite).await?;
        eprintln!("{}: ANALYZE in {:.1} s", a.store, t.elapsed().as_secs_f64());
    }
    let label = if a.analyze { a.store.clone() } else { format!("{} (no ANALYZE)", a.store) };
    println!("| store | case | n | p50 ms | p99 ms | rows | check |");
    println!("|---|---|---|---|---|---|---|");
    let cases = main_cases(&store).await?;
    time_cases(&store, &label, &cases, a).await?;

    // The issue's worst case: a kind with no rows at all.
    let t = Instant::now();
    sqlx::query("DELETE FROM tasks WHERE kind = $1").bind(TaskKind::Process.as_str()).execute(&pool).await?;
    if a.analyze {
        analyze(&pool, sqlite).await?;
    }
    eprintln!("{}: deleted the process tasks in {:.1} s", a.store, t.elapsed().as_secs_f64());
    time_cases(&store, &label, &empty_kind_cases()?, a).await?;
    pool.close().await;
    Ok(())
}

#[tokio::main]
async fn main() -> AnyResult<()> {
    let a = parse_args()?;
    sqlx::any::install_default_drivers();
    if a.store == "sqlite" {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("list_bench.db");
        let result = run(&a, &format!("sqlite://{}", path.display())).await;
        if a.keep {
            eprintln!("kept {}", path.display());
            std::mem::forget(dir);
        }
        return result;
    }
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
    let db = format!("mediapro_bench_{}_{}", std::process::id(), nanos % 1_000_000);
    let admin = AnyPoolOptions::new().max_connections(1).connect(&a.pg_url).await?;
    admin.execute(format!("CREATE DATABASE {db}").as_str()).await?;
    let (base, _) = a.pg_url.rsplit_once('/').ok_or("--pg-url has no database")?;
    let result = run(&a, &format!("{base}/{db}")).await;
    if a.keep {
        eprintln!("kept database {db}");
    } else {
        admin.execute(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)").as_str()).await?;
    }
    result
}
