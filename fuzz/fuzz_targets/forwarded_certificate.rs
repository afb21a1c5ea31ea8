//! The client certificate header a trusted proxy forwards, and the certificate parsing behind
//! partner identity: arbitrary header values and DER must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(chain) = passerelle::tls::parse_forwarded(text) {
            for cert in &chain {
                let _ = passerelle::tls::identity(cert);
            }
        }
    }
    let _ = passerelle::tls::identity(&data.to_vec().into());
});
