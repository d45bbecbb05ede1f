//! The serde model of the configuration file, exactly as written (strings for durations,
//! signals and `run-as`), with unknown keys rejected. Also the source of `simplevisor schema`.

/// The JSON Schema of the file, pretty-printed.
pub fn schema() -> String {
    todo!()
}
