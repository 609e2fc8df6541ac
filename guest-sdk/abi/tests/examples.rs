//! The WAT filters in `guest-sdk/examples` are valid modules that export exactly what the ABI
//! requires and import nothing but `promrelay.log`.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use promrelay_abi::{export, import};
use wasmparser::{Parser, Payload, TypeRef, Validator};

fn check(file: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(file);
    let bytes = wat::parse_file(&path).unwrap();
    Validator::new().validate_all(&bytes).unwrap();
    let mut exports = Vec::new();
    for payload in Parser::new(0).parse_all(&bytes) {
        match payload.unwrap() {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.unwrap();
                    assert_eq!((import.module, import.name), (import::MODULE, import::LOG));
                    assert!(matches!(import.ty, TypeRef::Func(_)));
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    exports.push(export.unwrap().name.to_string());
                }
            }
            _ => {}
        }
    }
    assert!(
        exports.iter().any(|e| e == export::MEMORY),
        "{file}: no memory export"
    );
    for name in export::FUNCTIONS {
        assert!(
            exports.iter().any(|e| e == name),
            "{file}: missing export {name}"
        );
    }
}

#[test]
fn pass_wat_follows_the_abi() {
    check("pass.wat");
}

#[test]
fn drop_all_wat_follows_the_abi() {
    check("drop-all.wat");
}
