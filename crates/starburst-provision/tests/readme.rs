//! The README's minimal caller policy is the generator's, for the default set-up name and the
//! placeholders ACCOUNT and REGION: the two cannot drift apart. `STARBURST_BLESS=1 cargo test -p
//! starburst-provision --test readme` writes the generator's policy into the README.

use starburst_cloud::Account;
use starburst_provision::permissions::{caller_permissions, policy_document};
use starburst_provision::setup::{SetupOptions, SetupPlan};

/// The comment the policy's code block follows in README.md.
const MARKER: &str = "<!-- caller-policy:";

#[test]
fn the_readme_s_caller_policy_is_the_generator_s() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    let readme = std::fs::read_to_string(path).expect("README.md");
    let after = &readme[readme
        .find(MARKER)
        .expect("the README has the caller-policy marker")..];
    let start = after
        .find("```json\n")
        .expect("a json block after the marker")
        + "```json\n".len();
    let len = after[start..].find("\n```").expect("the json block ends");
    let written = &after[start..start + len];
    let plan = SetupPlan::named(
        Account {
            id: "ACCOUNT".into(),
            region: "REGION".into(),
            partition: "aws".into(),
        },
        &SetupOptions::default(),
    );
    let generated = policy_document(&caller_permissions(&plan));
    if written != generated && std::env::var_os("STARBURST_BLESS").is_some_and(|v| v == "1") {
        let offset = readme.len() - after.len() + start;
        let mut updated = readme.clone();
        updated.replace_range(offset..offset + len, &generated);
        std::fs::write(path, updated).expect("write README.md");
        return;
    }
    assert!(
        written == generated,
        "README.md's caller policy differs from the generator's: run `STARBURST_BLESS=1 cargo \
         test -p starburst-provision --test readme`, or replace the block after `{MARKER}` \
         with:\n{generated}"
    );
}
