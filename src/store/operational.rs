//! The reserved application that holds the operational webhook endpoints. It has no record in the
//! applications tree, so no application route can reach it (they all look the application up
//! first), it is never listed, and no one can create it; its endpoints, messages, queue entries
//! and attempts live in the ordinary trees under its id, so the delivery engine treats its
//! deliveries as any other application's (durable, signed, retried, recorded).

use std::sync::LazyLock;

use crate::domain::AppId;

/// The all-zero KSUID: no generated id can equal it (a KSUID's time part is never zero).
const OPERATIONAL_APP_ID: &str = "app_000000000000000000000000000";

static OPERATIONAL_APP: LazyLock<AppId> = LazyLock::new(|| {
    OPERATIONAL_APP_ID
        .parse()
        .expect("the reserved application id is a valid id (unit-tested)")
});

/// The id of the reserved application whose endpoints are the operational webhook endpoints.
pub fn operational_app() -> &'static AppId {
    &OPERATIONAL_APP
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserved_id_parses_and_sorts_before_every_generated_one() {
        let id = operational_app();
        assert_eq!(id.as_str(), OPERATIONAL_APP_ID);
        assert!(id < &AppId::generate());
        assert!(id < &AppId::generate_at(1_400_000_000_000));
    }
}
