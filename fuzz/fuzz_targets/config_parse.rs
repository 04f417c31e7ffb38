//! The config parser and validator: any text is accepted or refused with an
//! error naming a field, never a panic.
#![no_main]

use edgefwd_control::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = Config::parse(text) {
            assert!(!e.to_string().is_empty());
        }
    }
});
