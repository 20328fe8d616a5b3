// The migrations are embedded at compile time (refinery's
// `embed_migrations!`), which does not tell cargo about the folder: without
// this, a new migration file is not picked up until something else changes.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
