//! The pipeline parser (`coordinator/src/pipeline/`): any text is parsed
//! and validated without panicking, every error has a position inside the
//! file (or 0:0 for the file as a whole), and a pipeline that parses can
//! be turned into its DAG, environments and re-run pipelines.
#![no_main]

use buildfleet_coordinator::pipeline;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match pipeline::parse("buildfleet.yaml", text) {
        Err(errors) => {
            assert!(!errors.is_empty(), "a refused pipeline says why");
            // YAML breaks lines at `\n`, `\r\n` and a lone `\r`; the YAML
            // reader puts an error at the end of the text on the line after
            // a last line without a break, hence one more.
            let lines = text.replace("\r\n", "\n").matches(['\n', '\r']).count() + 2;
            for e in &errors {
                assert!(
                    (e.line == 0 && e.column == 0) || (e.line >= 1 && e.line <= lines),
                    "{e} is outside the file ({lines} lines)"
                );
                let _ = e.to_string();
            }
        }
        Ok(p) => {
            let deps = p.dependencies();
            assert_eq!(deps.len(), p.steps().count(), "every step has an entry");
            for needs in deps.values() {
                for name in needs {
                    assert!(p.step(name).is_some(), "dependency {name} is a step");
                }
            }
            let _ = p.stage_budget();
            for step in p.steps() {
                let _ = p.result_cache_off(step);
                let _ = p.shard_env(step, 0, step.shards.max(), &["a b".to_owned()]);
                let alone = p.only(&step.name).expect("a step of the pipeline");
                assert_eq!(alone.steps().count(), 1);
            }
        }
    }
});
