//! Image I/O: references today; registry client, OCI layout and tar writers with `raypack bake`.

pub mod reference;
