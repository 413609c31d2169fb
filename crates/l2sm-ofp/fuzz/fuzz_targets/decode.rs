//! `decode` on arbitrary bytes: it must return (never panic), and whatever it accepts must
//! survive `encode` and decode to the same value again.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = l2sm_ofp::message_len(data);
    if let Ok(msg) = l2sm_ofp::decode(data) {
        if let Ok(bytes) = l2sm_ofp::encode(&msg) {
            let again = l2sm_ofp::decode(&bytes).expect("our own encoding decodes");
            assert_eq!(again, msg, "decode(encode(decode(x))) != decode(x)");
        }
    }
});
