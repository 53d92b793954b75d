//! The plugin SDK: ordinary Rust types on top of the stable boundary.
//!
//! A plugin implements [`ProducerLogic`] (a sans-IO state machine over decoded [`Input`]s that
//! pushes into [`Actions`]) and exports it with [`export_plugin!`](crate::export_plugin). The
//! macro wraps every entry point in `catch_unwind`, so a panic becomes an error the host can act
//! on instead of ending the process.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::std_types::{RBoxError, RErr, ROk, RResult, RStr, RString, RVec};
use serde::{Deserialize, Serialize};

use crate::abi::{
    ActionKind, ActionMsg, Category, Field, InputKind, InputMsg, LogLevel, Producer, ProducerBox, Producer_TO, Sample,
};
use crate::catalog::ComponentCatalog;
use crate::message::OutMessage;

/// Every error text produced by a caught panic starts with this, so the host can tell a panic
/// (restart the producer) from an ordinary error (log it).
pub const PANIC_PREFIX: &str = "producer panicked: ";

/// The version of this interface crate, reported in every plugin's descriptor.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// An error a producer returns from a call.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PluginError(pub String);

impl PluginError {
    /// An error with a message.
    pub fn new(msg: impl Into<String>) -> Self {
        PluginError(msg.into())
    }
}

impl From<serde_json::Error> for PluginError {
    fn from(e: serde_json::Error) -> Self {
        PluginError(e.to_string())
    }
}

/// SAL command ack codes, as salobj numbers them (the `code` of [`Input::CommandAck`]).
pub mod ack {
    /// Command accepted.
    pub const ACK: i64 = 300;
    /// In progress.
    pub const INPROGRESS: i64 = 301;
    /// Stalled.
    pub const STALLED: i64 = 302;
    /// Done.
    pub const COMPLETE: i64 = 303;
    /// Not permitted.
    pub const NOPERM: i64 = -300;
    /// Not acknowledged.
    pub const NOACK: i64 = -301;
    /// Failed.
    pub const FAILED: i64 = -302;
    /// Aborted.
    pub const ABORTED: i64 = -303;
    /// Timed out.
    pub const TIMEOUT: i64 = -304;
}

/// The configuration a producer is created with (JSON text across the boundary).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ProducerConfig {
    /// The component name (`ATDome`).
    pub component: String,
    /// The SAL index the producer reads (0: all indices of an indexed component).
    #[serde(default)]
    pub index: i64,
    /// The producer type the host chose.
    #[serde(default)]
    pub producer_type: String,
    /// `--periodic-data`: topic names with `tel_`/`evt_` prefixes, `None` when not given.
    #[serde(default)]
    pub periodic_data: Option<Vec<String>>,
    /// `--asynchronous-data`, likewise.
    #[serde(default)]
    pub asynchronous_data: Option<Vec<String>>,
    /// Settings by name (`FINISHED_SCRIPTS_LIST_SIZE`, `telemetry_period`, …), as text.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// The topic catalog of the component, when the host knows it.
    #[serde(default)]
    pub catalog: Option<ComponentCatalog>,
}

impl ProducerConfig {
    /// A setting parsed as `T`, or `default` when absent or unparsable.
    pub fn setting<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        self.settings.get(name).and_then(|v| v.trim().parse().ok()).unwrap_or(default)
    }
}

/// A decoded input. Grows freely: it never crosses the boundary.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// The producer starts (after creation or restore).
    Start,
    /// A SAL sample.
    Sample(&'a Sample),
    /// A manager message (raw JSON text).
    ManagerMessage(&'a str),
    /// The manager link came up: send initial data.
    Connected,
    /// The manager link went down.
    Disconnected,
    /// Send the initial_state subscriptions.
    Register,
    /// A wake-up asked for with [`Actions::wake_at`].
    Tick,
    /// A SAL command acknowledgement.
    CommandAck {
        /// The correlation id given with the command.
        id: u64,
        /// The SAL ack code (303 COMPLETE, -302 FAILED, -304 TIMEOUT…).
        code: i64,
        /// The result text.
        result: &'a str,
    },
    /// The catalog of a component subscribed with [`Actions::subscribe_sal`] (JSON).
    Catalog(&'a str),
    /// An input kind this SDK does not know (from a newer host): ignore it.
    Unknown(u32),
}

impl<'a> Input<'a> {
    /// Decode the stable input struct.
    pub fn decode(msg: &'a InputMsg) -> Self {
        match msg.kind {
            InputKind::START => Input::Start,
            InputKind::SAMPLE => Input::Sample(&msg.sample),
            InputKind::MANAGER_MESSAGE => Input::ManagerMessage(msg.text.as_str()),
            InputKind::CONNECTED => Input::Connected,
            InputKind::DISCONNECTED => Input::Disconnected,
            InputKind::REGISTER => Input::Register,
            InputKind::TICK => Input::Tick,
            InputKind::COMMAND_ACK => Input::CommandAck { id: msg.id, code: msg.code, result: msg.text.as_str() },
            InputKind::CATALOG => Input::Catalog(msg.text.as_str()),
            other => Input::Unknown(other.0),
        }
    }

    /// Encode into the stable input struct (the host side and the test driver).
    pub fn encode(&self) -> InputMsg {
        let mut m = InputMsg::default();
        match *self {
            Input::Start => m.kind = InputKind::START,
            Input::Sample(s) => {
                m.kind = InputKind::SAMPLE;
                m.sample = s.clone();
            }
            Input::ManagerMessage(t) => {
                m.kind = InputKind::MANAGER_MESSAGE;
                m.text = t.into();
            }
            Input::Connected => m.kind = InputKind::CONNECTED,
            Input::Disconnected => m.kind = InputKind::DISCONNECTED,
            Input::Register => m.kind = InputKind::REGISTER,
            Input::Tick => m.kind = InputKind::TICK,
            Input::CommandAck { id, code, result } => {
                m.kind = InputKind::COMMAND_ACK;
                m.id = id;
                m.code = code;
                m.text = result.into();
            }
            Input::Catalog(t) => {
                m.kind = InputKind::CATALOG;
                m.text = t.into();
            }
            Input::Unknown(k) => m.kind = InputKind(k),
        }
        m
    }
}

/// Flag in a `SUBSCRIBE_SAL` action's `code`: no history. A plugin built before it sends 0,
/// and gets the history as before.
pub const SUBSCRIBE_NO_HISTORY: i64 = 1;

/// A decoded action. Grows freely: it never crosses the boundary.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send a message to the manager.
    Send(OutMessage),
    /// Send a SAL command.
    Command {
        /// Correlation id, echoed in the ack input.
        id: u64,
        /// Target component.
        component: String,
        /// Target index.
        index: i64,
        /// Command name without prefix (`showSchema`).
        name: String,
        /// Parameters.
        fields: Vec<Field>,
        /// Timeout in seconds.
        timeout: f64,
    },
    /// A log line.
    Log {
        /// Python-style level (10, 20, 30, 40).
        level: u32,
        /// The text.
        text: String,
    },
    /// Ask for a tick at this time.
    WakeAt(f64),
    /// Receive samples of another component too.
    SubscribeSal {
        /// Component name.
        component: String,
        /// Index (0: all indices).
        index: i64,
        /// Whether the latest historical sample of each event comes first (salobj's late-joiner
        /// read); false for [`Actions::subscribe_sal_live`].
        history: bool,
    },
    /// The `lost` count of the Heartbeat stream message just sent for a component (see
    /// [`Actions::heartbeat`]).
    HeartbeatLost {
        /// The monitored component.
        component: String,
        /// Its SAL index.
        index: i64,
        /// Heartbeats missed in a row.
        lost: u64,
    },
    /// An action kind this SDK does not know (from a newer plugin).
    Unknown(u32),
}

impl Action {
    /// Decode the stable action struct.
    pub fn decode(m: &ActionMsg) -> Self {
        match m.kind {
            ActionKind::SEND => Action::Send(OutMessage {
                category: Category(m.code as u32),
                csc: m.component.to_string(),
                salindex: m.index,
                stream: m.name.to_string(),
                text: m.text.to_string(),
            }),
            ActionKind::SAL_COMMAND => Action::Command {
                id: m.id,
                component: m.component.to_string(),
                index: m.index,
                name: m.name.to_string(),
                fields: m.fields.to_vec(),
                timeout: m.number,
            },
            ActionKind::LOG => Action::Log { level: m.code as u32, text: m.text.to_string() },
            ActionKind::WAKE_AT => Action::WakeAt(m.number),
            ActionKind::SUBSCRIBE_SAL => Action::SubscribeSal {
                component: m.component.to_string(),
                index: m.index,
                history: m.code & SUBSCRIBE_NO_HISTORY == 0,
            },
            ActionKind::HEARTBEAT_LOST => {
                Action::HeartbeatLost { component: m.component.to_string(), index: m.index, lost: m.code.max(0) as u64 }
            }
            other => Action::Unknown(other.0),
        }
    }
}

/// The actions a producer returns from one call.
#[derive(Debug, Default)]
pub struct Actions {
    list: Vec<ActionMsg>,
}

impl Actions {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Send a message to the manager.
    pub fn send(&mut self, msg: OutMessage) {
        self.list.push(ActionMsg {
            kind: ActionKind::SEND,
            code: msg.category.0 as i64,
            index: msg.salindex,
            component: msg.csc.into(),
            name: msg.stream.into(),
            text: msg.text.into(),
            ..Default::default()
        });
    }

    /// Send the Heartbeat stream message of a monitored component
    /// ([`message::heartbeat`](crate::message::heartbeat)) and report its `lost` count to the
    /// host ([`ActionKind::HEARTBEAT_LOST`]), whose metrics show it.
    pub fn heartbeat(&mut self, csc: &str, salindex: i64, lost: u64, last_heartbeat: Option<f64>, now: f64) {
        self.send(crate::message::heartbeat(csc, salindex, lost, last_heartbeat, now));
        self.list.push(ActionMsg {
            kind: ActionKind::HEARTBEAT_LOST,
            code: lost.min(i64::MAX as u64) as i64,
            index: salindex,
            component: csc.into(),
            ..Default::default()
        });
    }

    /// Log a line at a Python-style level.
    pub fn log(&mut self, level: LogLevel, text: impl Into<String>) {
        self.list.push(ActionMsg {
            kind: ActionKind::LOG,
            code: level.0 as i64,
            text: RString::from(text.into()),
            ..Default::default()
        });
    }

    /// Ask the host for a [`Input::Tick`] at `time` (replaces earlier requests).
    pub fn wake_at(&mut self, time: f64) {
        self.list.push(ActionMsg { kind: ActionKind::WAKE_AT, number: time, ..Default::default() });
    }

    /// Send a SAL command; its acknowledgement comes back as [`Input::CommandAck`] with `id`.
    pub fn command(&mut self, id: u64, component: &str, index: i64, name: &str, fields: Vec<Field>, timeout: f64) {
        self.list.push(ActionMsg {
            kind: ActionKind::SAL_COMMAND,
            id,
            number: timeout,
            index,
            component: component.into(),
            name: name.into(),
            fields: fields.into(),
            ..Default::default()
        });
    }

    /// Receive the samples of another component (index 0: all indices), starting with the
    /// latest historical sample of each of its events, as for the producer's own component.
    pub fn subscribe_sal(&mut self, component: &str, index: i64) {
        self.list.push(ActionMsg {
            kind: ActionKind::SUBSCRIBE_SAL,
            index,
            component: component.into(),
            ..Default::default()
        });
    }

    /// [`Actions::subscribe_sal`] without the history: only samples published from now on
    /// (the scriptqueue producer's subscription to every script, whose old events must not
    /// look new).
    pub fn subscribe_sal_live(&mut self, component: &str, index: i64) {
        self.list.push(ActionMsg {
            kind: ActionKind::SUBSCRIBE_SAL,
            code: SUBSCRIBE_NO_HISTORY,
            index,
            component: component.into(),
            ..Default::default()
        });
    }

    /// Push a raw action (for kinds this SDK version has no helper for).
    pub fn push_raw(&mut self, action: ActionMsg) {
        self.list.push(action);
    }

    /// The actions so far.
    pub fn as_slice(&self) -> &[ActionMsg] {
        &self.list
    }

    /// Take the actions out.
    pub fn into_vec(self) -> Vec<ActionMsg> {
        self.list
    }
}

/// What a plugin implements: a sans-IO producer. It never does I/O, never spawns, never reads
/// the clock: `now` comes with every call.
pub trait ProducerLogic: Send + 'static {
    /// Handle one input.
    fn handle(&mut self, input: Input<'_>, now: f64, out: &mut Actions) -> Result<(), PluginError>;

    /// The whole state as a versioned text (see PLUGINS.md, "Snapshots").
    fn snapshot(&self) -> Result<String, PluginError>;

    /// Replace the state with a snapshot, possibly from an older version of the plugin.
    fn restore(&mut self, snapshot: &str) -> Result<(), PluginError>;
}

/// Turn a panic payload into text.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

thread_local! {
    /// How deep this thread is inside [`guard`]: a panic there is caught and reported.
    static GUARDED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    /// Where the last guarded panic happened (`file:line:column`), recorded by the quiet hook.
    static PANIC_AT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Install, once per copy of std (a plugin `.so` has its own), a panic hook that keeps quiet
/// about panics inside [`guard`]: it records where they happened and nothing else. The
/// default hook prints to standard error, past the host's logger, and with `RUST_BACKTRACE`
/// set symbolizes a backtrace, which loads the plugin's debug information for good (about
/// 170 MB for the csc plugin). The panic is returned to the host as an error instead, which
/// the host logs with the component. Panics elsewhere go to the previous hook.
fn install_quiet_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if GUARDED.with(|g| g.get()) > 0 {
                let at = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
                PANIC_AT.with(|p| *p.borrow_mut() = at);
            } else {
                previous(info);
            }
        }));
    });
}

fn guard<T>(what: &str, f: impl FnOnce() -> Result<T, PluginError>) -> RResult<T, RBoxError> {
    install_quiet_hook();
    GUARDED.with(|g| g.set(g.get() + 1));
    let result = catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(g.get() - 1));
    match result {
        Ok(Ok(v)) => ROk(v),
        Ok(Err(e)) => RErr(RBoxError::from_fmt(&format_args!("{what}: {e}"))),
        Err(payload) => {
            let at = PANIC_AT.with(|p| p.borrow_mut().take()).map(|l| format!(" (at {l})")).unwrap_or_default();
            RErr(RBoxError::from_fmt(&format_args!("{PANIC_PREFIX}{what}: {}{at}", panic_text(&*payload))))
        }
    }
}

/// Adapts a [`ProducerLogic`] to the stable [`Producer`] trait, catching panics.
pub struct Guarded<P>(pub P);

impl<P: ProducerLogic> Producer for Guarded<P> {
    fn handle(&mut self, input: &InputMsg, now: f64) -> RResult<RVec<ActionMsg>, RBoxError> {
        let inner = &mut self.0;
        guard("handle", || {
            let mut out = Actions::new();
            inner.handle(Input::decode(input), now, &mut out)?;
            Ok(RVec::from(out.into_vec()))
        })
    }

    fn snapshot(&self) -> RResult<RString, RBoxError> {
        let inner = &self.0;
        guard("snapshot", || inner.snapshot().map(RString::from))
    }

    fn restore(&mut self, snapshot: RStr<'_>) -> RResult<(), RBoxError> {
        let inner = &mut self.0;
        guard("restore", || inner.restore(snapshot.as_str()))
    }
}

/// Runs a producer's destructor under `catch_unwind`: abi_stable aborts the process when a
/// destructor called through the trait object unwinds, and producers are dropped at every
/// upgrade, restart and shutdown.
struct CatchDrop<P>(std::mem::ManuallyDrop<P>);

impl<P> Drop for CatchDrop<P> {
    fn drop(&mut self) {
        let inner = &mut self.0;
        // SAFETY: the value is dropped exactly once, here, and never touched afterwards.
        let dropped = catch_unwind(AssertUnwindSafe(|| unsafe { std::mem::ManuallyDrop::drop(inner) }));
        // The panic hook has printed the message; the producer is gone either way.
        let _ = dropped;
    }
}

impl<P: ProducerLogic> ProducerLogic for CatchDrop<P> {
    fn handle(&mut self, input: Input<'_>, now: f64, out: &mut Actions) -> Result<(), PluginError> {
        self.0.handle(input, now, out)
    }

    fn snapshot(&self) -> Result<String, PluginError> {
        self.0.snapshot()
    }

    fn restore(&mut self, snapshot: &str) -> Result<(), PluginError> {
        self.0.restore(snapshot)
    }
}

/// Box a producer behind the stable trait object (used by the export macro and the host's
/// built-in producers).
pub fn into_producer_box<P: ProducerLogic>(p: P) -> ProducerBox {
    Producer_TO::from_value(Guarded(CatchDrop(std::mem::ManuallyDrop::new(p))), abi_stable::sabi_trait::TD_Opaque)
}

/// Parse a producer configuration and build a producer, catching panics (used by the export
/// macro).
pub fn create_guarded<P: ProducerLogic>(
    config: RStr<'_>,
    create: fn(ProducerConfig) -> Result<P, PluginError>,
) -> RResult<ProducerBox, RBoxError> {
    guard("create", || {
        let cfg: ProducerConfig = serde_json::from_str(config.as_str())
            .map_err(|e| PluginError(format!("invalid producer configuration: {e}")))?;
        create(cfg).map(into_producer_box)
    })
}

/// Build a descriptor, catching panics (used by the export macro).
pub fn describe(
    name: &str,
    version: &str,
    producer_type: &str,
    claims: &[&str],
) -> RResult<crate::abi::PluginDescriptor, RBoxError> {
    guard("descriptor", || {
        Ok(crate::abi::PluginDescriptor {
            name: name.into(),
            version: version.into(),
            producer_type: producer_type.into(),
            claims: claims.iter().map(|c| RString::from(*c)).collect(),
            api_version: API_VERSION.into(),
            extra: RString::new(),
        })
    })
}

/// Export a plugin: its descriptor and the function that creates its producer.
///
/// ```ignore
/// love_plugin_api::export_plugin! {
///     name: "dome-extras",
///     version: env!("CARGO_PKG_VERSION"),
///     producer_type: "dome-extras",
///     claims: ["ATDome"],
///     create: DomeExtras::new,   // fn(ProducerConfig) -> Result<DomeExtras, PluginError>
/// }
/// ```
#[macro_export]
macro_rules! export_plugin {
    (
        name: $name:expr,
        version: $version:expr,
        producer_type: $ptype:expr,
        claims: [$($claim:expr),* $(,)?],
        create: $create:expr $(,)?
    ) => {
        extern "C" fn __love_plugin_descriptor() -> $crate::abi_stable::std_types::RResult<
            $crate::abi::PluginDescriptor,
            $crate::abi_stable::std_types::RBoxError,
        > {
            $crate::sdk::describe($name, $version, $ptype, &[$($claim),*])
        }

        extern "C" fn __love_plugin_create(
            config: $crate::abi_stable::std_types::RStr<'_>,
        ) -> $crate::abi_stable::std_types::RResult<
            $crate::abi::ProducerBox,
            $crate::abi_stable::std_types::RBoxError,
        > {
            $crate::sdk::create_guarded(config, $create)
        }

        extern "C" fn __love_plugin_layout_anchor() -> $crate::abi::LayoutAnchor {
            ::std::default::Default::default()
        }

        fn __love_plugin_root_module() -> $crate::abi::PluginModRef {
            use $crate::abi_stable::prefix_type::PrefixTypeTrait;
            $crate::abi::PluginMod {
                descriptor: __love_plugin_descriptor,
                layout_anchor: __love_plugin_layout_anchor,
                create: __love_plugin_create,
            }
            .leak_into_prefix()
        }

        // What `#[abi_stable::export_root_module]` generates, written out so that plugins need
        // no direct dependency on abi_stable. The symbol name is checked by a test in the SDK.
        #[no_mangle]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::abi_stable::library::LibHeader = {
            pub extern "C" fn __love_erased_module() -> $crate::abi_stable::library::RootModuleResult {
                $crate::abi_stable::library::__call_root_module_loader(__love_plugin_root_module)
            }
            unsafe {
                $crate::abi_stable::library::LibHeader::from_constructor::<$crate::abi::PluginModRef>(
                    __love_erased_module,
                    $crate::abi_stable::library::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    struct PanicsWhenDropped;

    impl ProducerLogic for PanicsWhenDropped {
        fn handle(&mut self, _: Input<'_>, _: f64, _: &mut Actions) -> Result<(), PluginError> {
            Ok(())
        }
        fn snapshot(&self) -> Result<String, PluginError> {
            Ok(String::new())
        }
        fn restore(&mut self, _: &str) -> Result<(), PluginError> {
            Ok(())
        }
    }

    impl Drop for PanicsWhenDropped {
        fn drop(&mut self) {
            panic!("destructor panics");
        }
    }

    #[test]
    fn a_destructor_that_panics_does_not_abort_the_host() {
        // Without the guard abi_stable aborts the whole test process here.
        let mut producer = into_producer_box(PanicsWhenDropped);
        assert!(producer.handle(&Input::Tick.encode(), 0.0).is_ok());
        drop(producer);
    }

    #[test]
    fn exported_symbol_name_is_abi_stables() {
        assert_eq!(abi_stable::library::ROOT_MODULE_LOADER_NAME, "_1as_0lib_1header_0root_bmodule_bloader");
    }
}
