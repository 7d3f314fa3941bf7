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
//! The fill runs inside the database: a few `INSERT INTO tasks … SELECT …` over a number
//! series (SQLite: a recursive CTE; PostgreSQL: `generate_series`), every column a
//! function of the row number (see [`fill_sql`]); a million rows take seconds, not the
//! twenty minutes of binding them row by row. It is deterministic (fixed time base, no
//! randomness), so two runs on different schemas return the same pages: the `check`
//! column (a hash of the first page) must match between them. After the fill and after
//! the mass delete the bench runs `ANALYZE` (SQLite) or `VACUUM ANALYZE` (PostgreSQL),
//! as a maintained database (autovacuum) would; `--no-analyze` skips it. A case stops early once it
//! has run `--budget-secs` seconds (at least 20 timed runs), so a slow "before" run
//! stays short; `n` says how many runs were timed. Each store's table opens and closes
//! with a control row (one task by primary key, the cheapest call there is) and ends
//! with the CPU steal measured over the cases: on a shared virtual machine a p99 near the
//! control's is the machine's tail, not the query's.

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
/// Rows generated per INSERT … SELECT statement.
const ROWS_PER_INSERT: usize = 250_000;
/// 2026-11-01T00:00:00Z, in µs: the oldest task; the newest is 30 days later.
const BASE_MICROS: i64 = 1_793_491_200_000_000;
const DAY_MICROS: i64 = 86_400_000_000;
const HOUR_MICROS: i64 = 3_600_000_000;
const SPAN_MICROS: i64 = 30 * DAY_MICROS;
/// Two odd 32-bit multipliers: `i * M mod 2^32` is a bijection of `0..2^32`, mixed
/// enough for the rolls below, and the product of a row number below 2^31 never
/// overflows a BIGINT (both engines compute it the same way).
const HASH_A: i64 = 2_654_435_761;
const HASH_B: i64 = 2_246_822_519;
const MOD_32: i64 = 1 << 32;

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
    if a.tasks >= 1 << 31 {
        return Err("--tasks must be below 2^31".into());
    }
    Ok(a)
}

/// One real request per kind, as the store writes it (`serde_json` of a [`TaskRequest`]).
fn request_json(kind: TaskKind) -> AnyResult<String> {
    let raw = match kind {
        TaskKind::Download => r#"{"kind":"download","url":"https://media.example.com/watch?v=clip"}"#,
        TaskKind::Process => {
            r#"{"kind":"process","input_file":"uploads/clip.mp4","operations":{"trim":null,"resize":{"width":1280,"height":null},"quality":23,"fps":null,"format":null,"audio_only":false,"copy":false}}"#
        }
        TaskKind::Playlist => {
            r#"{"kind":"playlist","url":"https://media.example.com/feed.xml","items":"1-10","entry":{"url":"https://media.example.com/feed.xml"}}"#
        }
    };
    let request: TaskRequest = serde_json::from_str(raw)?;
    if request.kind() != kind {
        return Err(format!("fixture for {} has kind {}", kind.as_str(), request.kind().as_str()).into());
    }
    Ok(serde_json::to_string(&request)?)
}

fn lit(s: impl Into<&'static str>) -> String {
    format!("'{}'", s.into())
}

/// `INSERT INTO tasks … SELECT …` generating rows `lo..hi` of `n` inside the database
/// (binds: `$1` the download request JSON, `$2` the process one). Every column is a
/// function of the row number `i`, so the table is the same on both engines and in
/// every run:
/// - kind: 70 % download / 30 % process;
/// - status: 90.5 % completed, 5 % failed, 3 % cancelled, 1 % pending, 0.5 % running
///   (the kind's running status), spread over the whole period;
/// - created_at: row `i` at `BASE + i × SPAN/n` plus a jitter below half a step
///   (strictly increasing), except that every 1000th task shares its predecessor's
///   timestamp, to exercise the task_id tie-break;
/// - task_id: a UUID-shaped text, `hash(i)` then `i` in hex: unique, and in an order
///   unrelated to created_at (as random ids are).
fn fill_sql(sqlite: bool, lo: usize, hi: usize, n: usize) -> String {
    use TaskStatus::*;
    let step = SPAN_MICROS / n.max(1) as i64;
    let half = (step / 2).max(1);
    let hash_a = |i: &str| format!("(({i}) * {HASH_A} % {MOD_32})");
    let ts = |i: &str| format!("({BASE_MICROS} + ({i}) * {step} + {} % {half})", hash_a(i));
    let series = if sqlite {
        format!(
            "(WITH RECURSIVE n(i) AS (SELECT {lo} UNION ALL SELECT i + 1 FROM n WHERE i < {}) SELECT i FROM n)",
            hi - 1
        )
    } else {
        format!("(SELECT generate_series({lo}::bigint, {}::bigint) AS i)", hi - 1)
    };
    let (task_id, job_id) = if sqlite {
        ("printf('%08x-0000-4000-8000-%012x', h1, i)".to_owned(), "printf('01JBENCH%018d', i)".to_owned())
    } else {
        (
            "lpad(to_hex(h1), 8, '0') || '-0000-4000-8000-' || lpad(to_hex(i), 12, '0')".to_owned(),
            "'01JBENCH' || lpad(i::text, 18, '0')".to_owned(),
        )
    };
    let i_text = if sqlite { "i" } else { "i::text" };
    let (download, process) = (lit(TaskKind::Download), lit(TaskKind::Process));
    let (completed, failed, cancelled, pending) = (lit(Completed), lit(Failed), lit(Cancelled), lit(Pending));
    let (downloading, processing) =
        (lit(TaskKind::Download.running_status()), lit(TaskKind::Process.running_status()));
    let hashes = format!(
        "SELECT i, {} AS h1, ((i * {HASH_B} + 374761393) % {MOD_32}) AS h2 FROM {series} AS g",
        hash_a("i")
    );
    let keyed = format!(
        "SELECT i, {task_id} AS task_id, \
         CASE WHEN h1 / 65536 % 100 < 70 THEN {download} ELSE {process} END AS kind, \
         h2 / 4096 % 1000 AS roll, \
         CASE WHEN i % 1000 = 999 THEN {} ELSE {} END AS created_at, {job_id} AS job_id \
         FROM ({hashes}) AS h",
        ts("i - 1"),
        ts("i")
    );
    let statused = format!(
        "SELECT i, task_id, kind, created_at, job_id, CASE WHEN roll < 905 THEN {completed} \
         WHEN roll < 955 THEN {failed} WHEN roll < 985 THEN {cancelled} WHEN roll < 995 THEN {pending} \
         WHEN kind = {download} THEN {downloading} ELSE {processing} END AS status FROM ({keyed}) AS k"
    );
    format!(
        "INSERT INTO tasks ({COLUMNS}) SELECT task_id, kind, status, \
         CASE WHEN status = {completed} THEN 100.0 ELSE 0.0 END, created_at, \
         CASE WHEN status <> {pending} THEN created_at + 1000000 END, \
         CASE WHEN status IN ({completed}, {failed}, {cancelled}) THEN created_at + 20000000 END, \
         created_at, CASE WHEN kind = {download} THEN $1 ELSE $2 END, \
         CASE WHEN kind = {download} AND status = {completed} \
           THEN '[\"downloads/' || task_id || '/clip' || {i_text} || '.mp4\"]' ELSE '[]' END, \
         CASE WHEN kind = {process} AND status = {completed} THEN 'processed/' || task_id || '.mp4' END, \
         CASE WHEN status = {failed} THEN 'yt-dlp exited with status 1' END, \
         CASE WHEN status = {pending} THEN 0 ELSE 1 END, \
         CASE WHEN status <> {pending} THEN 'worker-1' END, NULL, NULL, job_id \
         FROM ({statused}) AS s"
    )
}

async fn fill(pool: &AnyPool, sqlite: bool, n: usize) -> AnyResult<()> {
    let download = request_json(TaskKind::Download)?;
    let process = request_json(TaskKind::Process)?;
    let mut tx = pool.begin().await?;
    for lo in (0..n).step_by(ROWS_PER_INSERT) {
        let hi = (lo + ROWS_PER_INSERT).min(n);
        sqlx::query(&fill_sql(sqlite, lo, hi, n))
            .bind(download.as_str())
            .bind(process.as_str())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
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

/// Runs `op` `a.warmup` times, then times it up to `a.runs` times (at least 20,
/// at most `a.budget` once 20 are in); the durations come back sorted.
async fn sample<F, Fut>(a: &Args, mut op: F) -> AnyResult<Vec<Duration>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = AnyResult<()>>,
{
    for _ in 0..a.warmup {
        op().await?;
    }
    let mut times = Vec::with_capacity(a.runs);
    let started = Instant::now();
    while times.len() < a.runs && (times.len() < 20 || started.elapsed() < a.budget) {
        let t = Instant::now();
        op().await?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok(times)
}

fn print_row(label: &str, case: &str, times: &[Duration], rows: usize, check: u32) {
    let (p50, p99) = (percentile(times, 0.50), percentile(times, 0.99));
    println!("| {label} | {case} | {} | {p50:.3} | {p99:.3} | {rows} | {check:08x} |", times.len());
}

async fn time_cases(store: &TaskStore, label: &str, cases: &[Case], a: &Args) -> AnyResult<()> {
    for case in cases {
        let first = store.list(&case.filter).await?;
        let ids: Vec<String> = first.tasks.iter().map(|t| t.task_id.to_string()).collect();
        let times = sample(a, || async {
            std::hint::black_box(store.list(&case.filter).await?);
            Ok(())
        })
        .await?;
        print_row(label, &case.name, &times, ids.len(), check(&ids));
    }
    Ok(())
}

/// The floor this machine sets in this run: the cheapest store call there is (one
/// task by primary key), timed like the cases. A list case's p99 near this one's
/// is the machine's tail (scheduler, CPU steal), not the query's.
async fn time_control(store: &TaskStore, label: &str, a: &Args) -> AnyResult<()> {
    let page = store.list(&f()).await?;
    let id = page.tasks.first().ok_or("the store is empty")?.task_id;
    let times = sample(a, || async {
        std::hint::black_box(store.get(id).await?);
        Ok(())
    })
    .await?;
    print_row(label, "control: one task by id", &times, 1, check(&[id.to_string()]));
    Ok(())
}

/// CPU time stolen by the hypervisor, from `/proc/stat` (Linux): `(steal, total)` jiffies.
fn steal_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.split_whitespace().skip(1);
    let fields: Vec<u64> = cpu.filter_map(|v| v.parse().ok()).collect();
    Some((*fields.get(7)?, fields.iter().take(8).sum()))
}

fn print_steal(store: &str, since: Option<(u64, u64)>) {
    if let (Some((s0, t0)), Some((s1, t1))) = (since, steal_jiffies())
        && t1 > t0
    {
        let pct = 100.0 * (s1 - s0) as f64 / (t1 - t0) as f64;
        println!("\n{store}: CPU steal (hypervisor) during the cases: {pct:.1} % of all CPU time");
    }
}

/// Brings the table to the state a maintained database keeps it in: statistics
/// (both engines), and on PostgreSQL a vacuum, as autovacuum would run after a bulk
/// insert or a mass delete (without it, a delete leaves dead index entries that every
/// later scan of that range walks, and a fresh fill has no visibility map, so index-only
/// scans visit the heap).
async fn analyze(pool: &AnyPool, sqlite: bool) -> AnyResult<()> {
    if sqlite {
        pool.execute("ANALYZE").await?;
    } else {
        pool.execute("VACUUM ANALYZE tasks").await?;
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
    let t = Instant::now();
    fill(&pool, sqlite, a.tasks).await?;
    eprintln!("{}: filled {} tasks in {:.1} s", a.store, a.tasks, t.elapsed().as_secs_f64());
    if a.analyze {
        let t = Instant::now();
        analyze(&pool, sqlite).await?;
        eprintln!("{}: ANALYZE (PostgreSQL: VACUUM ANALYZE) in {:.1} s", a.store, t.elapsed().as_secs_f64());
    }
    let label = if a.analyze { a.store.clone() } else { format!("{} (no ANALYZE)", a.store) };
    println!("| store | case | n | p50 ms | p99 ms | rows | check |");
    println!("|---|---|---|---|---|---|---|");
    let steal = steal_jiffies();
    time_control(&store, &label, a).await?;
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
    time_control(&store, &label, a).await?;
    print_steal(&a.store, steal);
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
