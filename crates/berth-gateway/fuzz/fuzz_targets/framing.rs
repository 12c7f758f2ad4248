//! A connection's bytes read by berth's framing and by hyper: a client's as requests
//! (hyper's server), or a guest's as responses (hyper's client); both must find the
//! same messages and bodies (berth_gateway::framing::fuzzing). The first byte says
//! which: even for requests, odd for responses.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((b, rest)) if b % 2 == 1 => berth_gateway::framing::fuzzing::responses(rest),
        Some((_, rest)) => berth_gateway::framing::fuzzing::requests(rest),
        None => {}
    }
});
