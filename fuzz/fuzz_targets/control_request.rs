//! The control-protocol decoder: any bytes are a command or a refusal with
//! a message, never a panic; a decoded command encodes and decodes back to
//! itself.
#![no_main]

use edgefwd_control::api::{parse_request, Request, VERSION};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_request(data) {
        Ok(cmd) => {
            let line = serde_json::to_vec(&Request {
                version: VERSION,
                command: cmd.clone(),
            })
            .unwrap();
            assert_eq!(parse_request(&line), Ok(cmd));
        }
        Err(e) => assert!(!e.is_empty()),
    }
});
