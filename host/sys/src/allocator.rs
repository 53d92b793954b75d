//! The allocators' memory settings for a long-running host, applied at start-up unless the
//! operator's environment already chose them.
//!
//! Two allocators live in the process: mimalloc, the host's Rust allocator, and glibc's malloc,
//! used by librdkafka and the plugins. Left at their defaults on the summit set over Kafka
//! (BENCHMARKS.md, "Over Kafka"), glibc opens an arena per busy thread (8 × cores) and mimalloc
//! keeps freed pages for a second before returning them; with the two settings below the
//! host's resident memory was 0.84× the default's while publishing and 0.83× idle.

/// glibc's arena limit: librdkafka's threads and the plugins' share two arenas.
const ARENA_MAX: i32 = 2;
/// mimalloc's purge delay in milliseconds: return freed pages at once (its default is 1000).
const PURGE_DELAY_MS: i64 = 0;

/// mimalloc's index of `purge_delay` (mimalloc v3's `mi_option_e`, which libmimalloc-sys
/// does not name); the tests check it against the option's default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Where one allocator setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    /// love-host's value (with its unit), set at start-up.
    Default(String),
    /// The environment chose: the variable named, which its allocator reads itself.
    FromEnvironment(&'static str),
    /// Not applicable to this build (glibc's setting on another C library).
    Unsupported,
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Setting::Default(v) => write!(f, "{v} (love-host's default)"),
            Setting::FromEnvironment(var) => write!(f, "as {var} sets it"),
            Setting::Unsupported => f.write_str("not applicable"),
        }
    }
}

/// What [`apply_defaults`] did, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuning {
    pub arena_max: Setting,
    pub purge_delay: Setting,
}

impl std::fmt::Display for Tuning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "glibc malloc arena limit {}, mimalloc purge delay {}", self.arena_max, self.purge_delay)
    }
}

/// Apply love-host's allocator defaults where the environment (`env`, a lookup of the
/// process's variables) leaves them unset. Call it first thing in `main`, before other threads
/// exist: glibc's limit only bounds arenas created after it.
pub fn apply_defaults(env: impl Fn(&str) -> Option<String>) -> Tuning {
    Tuning { arena_max: limit_arenas(&env), purge_delay: purge_at_once(&env) }
}

fn limit_arenas(env: &impl Fn(&str) -> Option<String>) -> Setting {
    // glibc reads both: the old variable and its tunables string.
    if env("MALLOC_ARENA_MAX").is_some() {
        return Setting::FromEnvironment("MALLOC_ARENA_MAX");
    }
    if env("GLIBC_TUNABLES").is_some_and(|t| t.contains("glibc.malloc.arena_max")) {
        return Setting::FromEnvironment("GLIBC_TUNABLES");
    }
    set_arena_max()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_arena_max() -> Setting {
    // SAFETY: mallopt(3) takes two integers; M_ARENA_MAX only bounds arenas made from now on.
    if unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX) } == 1 {
        Setting::Default(ARENA_MAX.to_string())
    } else {
        Setting::Unsupported
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max() -> Setting {
    Setting::Unsupported
}

fn purge_at_once(env: &impl Fn(&str) -> Option<String>) -> Setting {
    // mimalloc reads its options from the environment at load, case-insensitively, and the
    // purge delay also under its old name.
    for var in ["MIMALLOC_PURGE_DELAY", "MIMALLOC_RESET_DELAY"] {
        if env(var).is_some() || env(&var.to_ascii_lowercase()).is_some() {
            return Setting::FromEnvironment(var);
        }
    }
    // SAFETY: sets one option of mimalloc's static table; `set_default` keeps a value the
    // environment gave, so this cannot override the operator.
    unsafe { libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS as _) };
    Setting::Default(format!("{PURGE_DELAY_MS} ms"))
}

/// mimalloc's current purge delay, in milliseconds.
#[cfg(test)]
fn purge_delay_ms() -> i64 {
    // SAFETY: reads one option of mimalloc's static table.
    unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) as i64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    /// One test, because the settings are the process's own: the order matters.
    #[test]
    fn the_environment_wins_and_otherwise_the_defaults_apply() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() || std::env::var_os("MIMALLOC_RESET_DELAY").is_some() {
            eprintln!("skipped: the test's own environment sets mimalloc's purge delay");
            return;
        }
        // The index names purge_delay: mimalloc v3's default for it is 1000 ms, no other
        // option's default is.
        assert_eq!(purge_delay_ms(), 1000, "MI_OPTION_PURGE_DELAY is not mimalloc's purge_delay");

        let chosen = apply_defaults(env_of(&[("MALLOC_ARENA_MAX", "4"), ("MIMALLOC_PURGE_DELAY", "250")]));
        assert_eq!(chosen.arena_max, Setting::FromEnvironment("MALLOC_ARENA_MAX"));
        assert_eq!(chosen.purge_delay, Setting::FromEnvironment("MIMALLOC_PURGE_DELAY"));
        assert_eq!(purge_delay_ms(), 1000, "left to what mimalloc read");

        let tunables =
            apply_defaults(env_of(&[("GLIBC_TUNABLES", "glibc.malloc.arena_max=3"), ("mimalloc_reset_delay", "5")]));
        assert_eq!(tunables.arena_max, Setting::FromEnvironment("GLIBC_TUNABLES"));
        assert_eq!(tunables.purge_delay, Setting::FromEnvironment("MIMALLOC_RESET_DELAY"));

        let defaults = apply_defaults(env_of(&[("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0")]));
        assert_eq!(defaults.arena_max, Setting::Default("2".into()));
        assert_eq!(defaults.purge_delay, Setting::Default("0 ms".into()));
        assert_eq!(purge_delay_ms(), PURGE_DELAY_MS);
        assert_eq!(defaults.purge_delay.to_string(), "0 ms (love-host's default)");
        assert_eq!(
            defaults.to_string(),
            "glibc malloc arena limit 2 (love-host's default), mimalloc purge delay 0 ms (love-host's default)"
        );
    }
}
