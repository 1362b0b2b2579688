//! libFuzzer target: the RFB server's session (handshake, message parser, update encoder)
//! driven by arbitrary client bytes and display changes (see
//! `strata_hostagent::rfb::fuzz`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    strata_hostagent::rfb::fuzz::run(data);
});
