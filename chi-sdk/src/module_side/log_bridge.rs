//! The log bridge: a module library's `tracing` events, forwarded to the
//! runtime's log.
//!
//! The library's copy of `tracing` is not the runtime's, so its macros would
//! print nowhere. At `init` a subscriber is installed in the library's copy
//! that forwards every event the runtime's level lets through
//! ([`RuntimeServices::max_log_level`]) through [`RuntimeServices::log`]: the
//! event's message followed by its other fields as ` key=value`, with the
//! event's target (the module path of the code that logged it). Spans are not
//! forwarded.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

use crate::abi::{RuntimeServices, level};
use crate::module_side::services::log;

struct Forward {
    services: &'static RuntimeServices,
    max: LevelFilter,
}

fn filter_of(max: u32) -> LevelFilter {
    match max {
        0 => LevelFilter::OFF,
        level::ERROR => LevelFilter::ERROR,
        level::WARN => LevelFilter::WARN,
        level::INFO => LevelFilter::INFO,
        level::DEBUG => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

fn code_of(l: &Level) -> u32 {
    match *l {
        Level::ERROR => level::ERROR,
        Level::WARN => level::WARN,
        Level::INFO => level::INFO,
        Level::DEBUG => level::DEBUG,
        Level::TRACE => level::TRACE,
    }
}

/// The event's message, then its other fields as ` key=value`.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

impl Subscriber for Forward {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        *m.level() <= self.max
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, e: &Event<'_>) {
        let mut t = Text::default();
        e.record(&mut t);
        t.message.push_str(&t.fields);
        log(
            self.services,
            code_of(e.metadata().level()),
            e.metadata().target(),
            &t.message,
        );
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Installs the forwarder as this library's global `tracing` subscriber
/// (once; a library that already has one keeps it).
pub(crate) fn install(services: &'static RuntimeServices) {
    let max = filter_of(services.max_log_level);
    let _ = tracing::subscriber::set_global_default(Forward { services, max });
}
