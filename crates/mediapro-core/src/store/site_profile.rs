//! Site profiles in the task store (`migrations/20261204000002_site_profiles.sql`;
//! the type and its rules: `crates/mediapro-core/src/site_profile.rs`). The
//! uploaded cookies file is a column no listing selects: only [`TaskStore::site_cookies`]
//! reads it, for a job's or a check's private copy.

use super::{StoreError, TaskStore, micros, transition::Sql};
use crate::{
    site_profile::{self, CookieSummary, SiteConfig, SiteProfile},
    task::now,
};

/// `(name, config, cookies_summary, healthy, checked_at, check_error, created_at, updated_at)`.
type ProfileRow = (String, String, Option<String>, Option<i64>, Option<i64>, Option<String>, i64, i64);

const PROFILE_COLUMNS: &str =
    "name, config, cookies_summary, healthy, checked_at, check_error, created_at, updated_at";

fn rfc3339(m: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(m) * 1000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

fn corrupt(name: &str, why: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt { task_id: format!("site profile {name}"), why: why.to_string() }
}

fn into_profile(row: ProfileRow) -> Result<SiteProfile, StoreError> {
    let (name, config, summary, healthy, checked_at, check_error, created_at, updated_at) = row;
    let c: SiteConfig = serde_json::from_str(&config).map_err(|e| corrupt(&name, e))?;
    let cookies: Option<CookieSummary> =
        summary.as_deref().map(serde_json::from_str).transpose().map_err(|e| corrupt(&name, e))?;
    Ok(SiteProfile {
        name,
        domains: c.domains,
        max_concurrent: c.max_concurrent,
        min_interval_seconds: c.min_interval_seconds,
        sleep_requests_seconds: c.sleep_requests_seconds,
        sleep_interval_seconds: c.sleep_interval_seconds,
        user_agent: c.user_agent,
        headers: c.headers,
        format_id: c.format_id,
        upstream_proxy: c.upstream_proxy,
        check_url: c.check_url,
        cookies,
        healthy: healthy.map(|h| h != 0),
        checked_at: checked_at.map(rfc3339),
        check_error,
        created_at: rfc3339(created_at),
        updated_at: rfc3339(updated_at),
    })
}

/// Whether `PUT` created the profile or replaced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    Created,
    Replaced,
}

impl TaskStore {
    /// Creates or replaces the profile `name` (its cookies are kept; its health too,
    /// unless `check_url` changed).
    pub async fn put_site_profile(&self, name: &str, config: &SiteConfig) -> Result<Saved, StoreError> {
        let json = serde_json::to_string(config).map_err(|e| corrupt(name, e))?;
        let t = micros(now());
        let inserted = Sql::new("INSERT INTO site_profiles (name, config, created_at, updated_at) VALUES (")
            .arg(name)
            .text(", ")
            .arg(json.clone())
            .text(", ")
            .arg(t)
            .text(", ")
            .arg(t)
            .text(") ON CONFLICT (name) DO NOTHING")
            .execute(&self.writer)
            .await?;
        if inserted == 1 {
            return Ok(Saved::Created);
        }
        let before = self.site_profile(name).await?;
        let mut update =
            Sql::new("UPDATE site_profiles SET config = ").arg(json).text(", updated_at = ").arg(t);
        if before.is_some_and(|b| b.check_url != config.check_url) {
            update = update.text(", healthy = NULL, checked_at = NULL, check_error = NULL");
        }
        update.text(" WHERE name = ").arg(name).execute(&self.writer).await?;
        Ok(Saved::Replaced)
    }

    pub async fn site_profile(&self, name: &str) -> Result<Option<SiteProfile>, StoreError> {
        let rows: Vec<ProfileRow> =
            Sql::new(format!("SELECT {PROFILE_COLUMNS} FROM site_profiles WHERE name = "))
                .arg(name)
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter().next().map(into_profile).transpose()
    }

    /// Every profile, by name.
    pub async fn site_profiles(&self) -> Result<Vec<SiteProfile>, StoreError> {
        let rows: Vec<ProfileRow> =
            Sql::new(format!("SELECT {PROFILE_COLUMNS} FROM site_profiles ORDER BY name"))
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter().map(into_profile).collect()
    }

    /// The profile whose domains match `host` best (`site_profile::pick`): the
    /// longest matching domain; `None` when no profile matches.
    pub async fn site_profile_for_host(&self, host: &str) -> Result<Option<SiteProfile>, StoreError> {
        let profiles = self.site_profiles().await?;
        Ok(site_profile::pick(&profiles, host).cloned())
    }

    /// `true` if it existed.
    pub async fn delete_site_profile(&self, name: &str) -> Result<bool, StoreError> {
        let n = Sql::new("DELETE FROM site_profiles WHERE name = ").arg(name).execute(&self.writer).await?;
        Ok(n == 1)
    }

    /// Stores an uploaded (and checked) cookies file; `false` if there is no such profile.
    pub async fn set_site_cookies(
        &self,
        name: &str,
        cookies: &str,
        summary: &CookieSummary,
    ) -> Result<bool, StoreError> {
        let summary = serde_json::to_string(summary).map_err(|e| corrupt(name, e))?;
        let n = Sql::new("UPDATE site_profiles SET cookies = ")
            .arg(cookies)
            .text(", cookies_summary = ")
            .arg(summary)
            .text(", updated_at = ")
            .arg(micros(now()))
            .text(" WHERE name = ")
            .arg(name)
            .execute(&self.writer)
            .await?;
        Ok(n == 1)
    }

    /// The profile's cookies file (its values): only for a job's private copy.
    pub async fn site_cookies(&self, name: &str) -> Result<Option<String>, StoreError> {
        let rows: Vec<(Option<String>,)> = Sql::new("SELECT cookies FROM site_profiles WHERE name = ")
            .arg(name)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().next().and_then(|(c,)| c))
    }

    /// Records a `check_url` check; `false` if the profile is gone.
    pub async fn record_site_check(&self, name: &str, error: Option<&str>) -> Result<bool, StoreError> {
        let n = Sql::new("UPDATE site_profiles SET healthy = ")
            .arg(i64::from(error.is_none()))
            .text(", checked_at = ")
            .arg(micros(now()))
            .text(", check_error = ")
            .arg(error)
            .text(" WHERE name = ")
            .arg(name)
            .execute(&self.writer)
            .await?;
        Ok(n == 1)
    }

    /// Records which profile a task's URL matched (`site_profile` in its JSON).
    pub async fn set_task_site_profile(
        &self,
        task_id: uuid::Uuid,
        profile: Option<&str>,
    ) -> Result<(), StoreError> {
        Sql::new("UPDATE tasks SET site_profile = ")
            .arg(profile)
            .text(" WHERE task_id = ")
            .arg(task_id.to_string())
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}
