//! The JUnit reader (`runner/src/junit/`): any text is read without
//! panicking, and every test case it returns has a name and an id.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = std::str::from_utf8(data) else {
        return;
    };
    match buildfleet_runner::junit::parse("report.xml", xml) {
        Ok(cases) => {
            for case in &cases {
                let _ = case.id();
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
