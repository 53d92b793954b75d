//! The allocators' start-up settings (see `love_host_sys::allocator`), applied and logged.

use tracing::info;

/// Apply love-host's allocator defaults where the environment leaves them unset, and log what
/// each allocator uses. Call it before the process starts threads (the runtime, the plugins).
pub fn apply_allocator_defaults() -> love_host_sys::allocator::Tuning {
    let tuning = love_host_sys::allocator::apply_defaults(|var| std::env::var(var).ok());
    info!(arena_max = %tuning.arena_max, purge_delay = %tuning.purge_delay, "allocators: {tuning}");
    tuning
}
