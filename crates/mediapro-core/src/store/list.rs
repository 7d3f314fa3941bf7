//! `GET /api/tasks`: filtered, newest first, keyset pagination (stable while tasks
//! are being added: a page never repeats or skips a task).
//!
//! Every filter is answered by walking one index in `(created_at, task_id)` order and
//! stopping after a page (`migrations/20261201000001_list_indexes.sql`): its leading
//! columns are the equality filters (`kind`, `status`), the time window and the cursor
//! bound `created_at`. A list of several statuses cannot be walked in order in one
//! index (both engines would gather and sort every matching row), so it becomes one
//! ordered, LIMIT-ed branch per status, merged by `UNION ALL` and re-ordered: at most
//! `statuses × (limit + 1)` rows are sorted. `crates/mediapro-core/examples/list_bench.rs`
//! measures each case on a million tasks.

use crate::Code;
use time::OffsetDateTime;

use super::{COLUMNS, StoreError, TaskStore, micros, row};
use crate::{
    task::{Task, TaskKind, TaskStatus},
    validate::ValidationError,
};

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

/// Position after the last task of a page: `<created_at µs>_<task_id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    created_at: i64,
    task_id: String,
}

impl Cursor {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let bad = || ValidationError::new("cursor", Code::InvalidCursor, "is not a cursor this API returned");
        let (t, id) = raw.split_once('_').ok_or_else(bad)?;
        let created_at = t.parse().map_err(|_| bad())?;
        let task_id = id.parse::<uuid::Uuid>().map_err(|_| bad())?.to_string();
        Ok(Cursor { created_at, task_id })
    }

    fn after(task: &Task) -> Self {
        Cursor { created_at: micros(task.created_at), task_id: task.task_id.to_string() }
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.created_at, self.task_id)
    }
}

#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Empty = any status.
    pub statuses: Vec<TaskStatus>,
    pub kind: Option<TaskKind>,
    /// A collection's children (index `tasks_by_parent`).
    pub parent_task_id: Option<uuid::Uuid>,
    pub created_after: Option<OffsetDateTime>,
    pub created_before: Option<OffsetDateTime>,
    pub limit: u32,
    pub cursor: Option<Cursor>,
}

#[derive(Debug)]
pub struct TaskPage {
    pub tasks: Vec<Task>,
    pub next_cursor: Option<Cursor>,
}

enum Bind {
    Int(i64),
    Text(String),
}

/// `$n` placeholders, numbered in bind order.
#[derive(Default)]
struct Binds(Vec<Bind>);

impl Binds {
    fn push(&mut self, b: Bind) -> String {
        self.0.push(b);
        format!("${}", self.0.len())
    }
}

const NEWEST_FIRST: &str = "ORDER BY created_at DESC, task_id DESC";

/// One index walk: the filter with at most one status, newest first, `fetch` rows.
fn walk(filter: &TaskFilter, status: Option<TaskStatus>, fetch: u32, binds: &mut Binds) -> String {
    let mut clauses: Vec<String> = Vec::new();
    if let Some(s) = status {
        clauses.push(format!("status = {}", binds.push(Bind::Text(s.as_str().into()))));
    }
    if let Some(kind) = filter.kind {
        clauses.push(format!("kind = {}", binds.push(Bind::Text(kind.as_str().into()))));
    }
    if let Some(parent) = filter.parent_task_id {
        clauses.push(format!("parent_task_id = {}", binds.push(Bind::Text(parent.to_string()))));
    }
    if let Some(after) = filter.created_after {
        clauses.push(format!("created_at > {}", binds.push(Bind::Int(micros(after)))));
    }
    if let Some(before) = filter.created_before {
        clauses.push(format!("created_at < {}", binds.push(Bind::Int(micros(before)))));
    }
    if let Some(c) = &filter.cursor {
        // `(created_at, task_id) < cursor`, spelt with a plain upper bound on
        // created_at so that both planners use it as the index range (an OR alone
        // is only a filter: the walk would start at the newest task).
        let t1 = binds.push(Bind::Int(c.created_at));
        let t2 = binds.push(Bind::Int(c.created_at));
        let id = binds.push(Bind::Text(c.task_id.clone()));
        clauses.push(format!("created_at <= {t1} AND (created_at < {t2} OR task_id < {id})"));
    }
    let filter_sql =
        if clauses.is_empty() { String::new() } else { format!(" WHERE {}", clauses.join(" AND ")) };
    format!("SELECT {COLUMNS} FROM tasks{filter_sql} {NEWEST_FIRST} LIMIT {fetch}")
}

/// The page's SQL and its binds.
fn list_sql(filter: &TaskFilter, fetch: u32) -> (String, Vec<Bind>) {
    let mut statuses: Vec<TaskStatus> = Vec::new();
    for s in &filter.statuses {
        if !statuses.contains(s) {
            statuses.push(*s);
        }
    }
    let mut binds = Binds::default();
    let sql = match statuses.as_slice() {
        [] => walk(filter, None, fetch, &mut binds),
        [one] => walk(filter, Some(*one), fetch, &mut binds),
        many => {
            // A sub-select per branch (SQLite refuses ORDER BY/LIMIT on a bare
            // compound member); the aliases are required by PostgreSQL 15.
            let branches: Vec<String> = many
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    format!("SELECT * FROM ({}) AS s{i}", walk(filter, Some(*s), fetch, &mut binds))
                })
                .collect();
            format!(
                "SELECT {COLUMNS} FROM ({}) AS merged {NEWEST_FIRST} LIMIT {fetch}",
                branches.join(" UNION ALL ")
            )
        }
    };
    (sql, binds.0)
}

impl TaskStore {
    pub async fn list(&self, filter: &TaskFilter) -> Result<TaskPage, StoreError> {
        let limit = filter.limit.clamp(1, MAX_LIMIT);
        // One extra row tells whether another page exists.
        let (sql, binds) = list_sql(filter, limit + 1);
        // Not a cached prepared statement: PostgreSQL would switch it to a generic
        // plan after five runs, and a generic plan cannot see that `kind = $1`
        // matches nothing (it walks tasks_by_created and filters every row).
        // Unnamed, it is planned with the actual values each time.
        let mut query = sqlx::query_as::<_, row::TaskRow>(&sql).persistent(false);
        for b in binds {
            query = match b {
                Bind::Int(v) => query.bind(v),
                Bind::Text(v) => query.bind(v),
            };
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut tasks = rows.into_iter().map(row::TaskRow::into_task).collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if tasks.len() > limit as usize {
            tasks.truncate(limit as usize);
            tasks.last().map(Cursor::after)
        } else {
            None
        };
        Ok(TaskPage { tasks, next_cursor })
    }
}

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator;

    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = Cursor::parse("1795872707000000_9b2f1c1e-8e7a-4c1e-9d55-3c1f0a9e7b10").expect("valid");
        assert_eq!(Cursor::parse(&c.to_string()), Ok(c));
        for bad in ["", "x_y", "12", "12_not-a-uuid", "1_2_3"] {
            assert!(Cursor::parse(bad).is_err(), "{bad}");
        }
    }

    async fn temp_store(dir: &tempfile::TempDir) -> TaskStore {
        let url = format!("sqlite://{}", dir.path().join("list.db").display());
        let store = TaskStore::connect(&url, 2).await.expect("connect");
        store.migrate().await.expect("migrate");
        store
    }

    /// 60 tasks of both kinds, every status, three per timestamp (ties broken by id).
    async fn mixed_tasks(store: &TaskStore) -> Vec<Task> {
        let download: crate::task::TaskRequest =
            serde_json::from_str(r#"{"kind":"download","url":"https://media.example.com/v"}"#).expect("json");
        let process: crate::task::TaskRequest = serde_json::from_str(
            r#"{"kind":"process","input_file":"uploads/a.mp4","operations":{"audio_only":false,"copy":true}}"#,
        )
        .expect("json");
        let base = OffsetDateTime::from_unix_timestamp(1_795_000_000).expect("time");
        let mut tasks = Vec::new();
        for i in 0..60u16 {
            let request = if i % 4 == 0 { process.clone() } else { download.clone() };
            let mut t = Task::new_pending(request);
            t.status = TaskStatus::iter().nth(usize::from(i * 7 % 6)).expect("six statuses");
            t.created_at = base + time::Duration::seconds(i64::from(i / 3));
            store.insert(&t).await.expect("insert");
            tasks.push(t);
        }
        tasks
    }

    /// Follows every page of `filter`; checks each page's size and cursor.
    async fn all_pages(store: &TaskStore, filter: &TaskFilter) -> Vec<uuid::Uuid> {
        let mut f = filter.clone();
        let mut ids = Vec::new();
        loop {
            let page = store.list(&f).await.expect("list");
            assert!(page.tasks.len() <= f.limit as usize);
            ids.extend(page.tasks.iter().map(|t| t.task_id));
            match page.next_cursor {
                Some(c) => {
                    assert_eq!(page.tasks.len(), f.limit as usize);
                    f.cursor = Some(c);
                }
                None => return ids,
            }
        }
    }

    #[tokio::test]
    async fn status_lists_page_through_every_match_once_newest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = temp_store(&dir).await;
        let tasks = mixed_tasks(&store).await;
        let mut newest_first = tasks.clone();
        newest_first.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.task_id.to_string())));
        use TaskStatus::*;
        let filters = [
            TaskFilter { statuses: vec![Pending, Completed, Failed], ..TaskFilter::default() },
            TaskFilter { statuses: vec![Completed, Completed, Cancelled], ..TaskFilter::default() },
            TaskFilter { statuses: TaskStatus::iter().collect(), ..TaskFilter::default() },
            TaskFilter {
                statuses: vec![Downloading, Processing],
                kind: Some(TaskKind::Process),
                ..TaskFilter::default()
            },
            TaskFilter {
                statuses: vec![Pending, Failed],
                created_after: Some(newest_first[45].created_at),
                created_before: Some(newest_first[5].created_at),
                ..TaskFilter::default()
            },
            TaskFilter { statuses: vec![Failed], ..TaskFilter::default() },
            TaskFilter { kind: Some(TaskKind::Download), ..TaskFilter::default() },
            TaskFilter::default(),
        ];
        for filter in filters {
            let expected: Vec<uuid::Uuid> = newest_first
                .iter()
                .filter(|t| filter.statuses.is_empty() || filter.statuses.contains(&t.status))
                .filter(|t| filter.kind.is_none_or(|k| t.kind() == k))
                .filter(|t| filter.created_after.is_none_or(|a| t.created_at > a))
                .filter(|t| filter.created_before.is_none_or(|b| t.created_at < b))
                .map(|t| t.task_id)
                .collect();
            for limit in [1, 4, 7, 100] {
                let got = all_pages(&store, &TaskFilter { limit, ..filter.clone() }).await;
                assert_eq!(got, expected, "{filter:?} limit {limit}");
            }
        }
    }

    /// Every filter shape walks an index (SQLite's plan with no statistics, as a
    /// fresh database has): no table scan, and a sort only to merge a status list.
    #[tokio::test]
    async fn every_filter_walks_an_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = temp_store(&dir).await;
        mixed_tasks(&store).await;
        let t = Some(OffsetDateTime::from_unix_timestamp(1_795_000_010).expect("time"));
        let cursor =
            Some(Cursor::parse("1795000020000000_9b2f1c1e-8e7a-4c1e-9d55-3c1f0a9e7b10").expect("cursor"));
        let one = vec![TaskStatus::Failed];
        let two = vec![TaskStatus::Pending, TaskStatus::Failed];
        let mut filters = Vec::new();
        for statuses in [vec![], one, two] {
            for kind in [None, Some(TaskKind::Process)] {
                for (created_after, created_before) in [(None, None), (t, None), (None, t), (t, t)] {
                    for cursor in [None, cursor.clone()] {
                        let statuses = statuses.clone();
                        filters.push(TaskFilter {
                            statuses,
                            kind,
                            parent_task_id: None,
                            created_after,
                            created_before,
                            limit: 20,
                            cursor,
                        });
                    }
                }
            }
        }
        for filter in filters {
            let (sql, binds) = list_sql(&filter, 21);
            let explain = format!("EXPLAIN QUERY PLAN {sql}");
            let mut q = sqlx::query_as::<_, (i64, i64, i64, String)>(&explain);
            for b in binds {
                q = match b {
                    Bind::Int(v) => q.bind(v),
                    Bind::Text(v) => q.bind(v),
                };
            }
            let plan: Vec<String> =
                q.fetch_all(&store.pool).await.expect("plan").into_iter().map(|r| r.3).collect();
            for line in &plan {
                assert!(!line.contains(" tasks") || line.contains(" INDEX "), "{filter:?}: {plan:?}");
            }
            // A status list sorts the branches' pages (at most limit + 1 rows each), never the table.
            if filter.statuses.len() < 2 {
                assert!(!plan.iter().any(|l| l.contains("TEMP B-TREE")), "{filter:?}: {plan:?}");
            }
        }
    }
}
