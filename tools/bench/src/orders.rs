//! The orders each run places, decided up front and deterministically, so that two runs
//! of the same scenario send the same mix and a failure can be replayed.

use serde_json::{Value, json};

/// The seeded users that may order.
pub const USERS: [&str; 2] = ["jack", "jill"];
/// The seeded items, with their prices.
pub const ITEMS: [(&str, u64); 2] = [("widget", 10), ("wotsit", 15)];
/// The item every order of the hot-item run is for: its own document, so that its stock
/// can be set to sell out part-way without touching the other runs.
pub const HOT_ITEM: (&str, u64) = ("gizmo", 7);
/// A user that does not exist, for orders that must fail in the first step.
pub const UNKNOWN_USER: &str = "jimbo";

/// What the saga must do with an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// A valid order: it completes, unless stock runs out (or Pub/Sub gives up on it).
    Valid,
    /// It asks for a payment error: it must fail and never be paid.
    Declined,
    /// Its user does not exist: it must fail and never be paid.
    UnknownUser,
}

/// One order to place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderSpec {
    /// Item name.
    pub item: String,
    /// Units.
    pub quantity: u32,
    /// User name.
    pub user: String,
    /// What must happen.
    pub expect: Expect,
}

impl OrderSpec {
    fn valid(item: &str, quantity: u32, user: &str) -> Self {
        OrderSpec {
            item: item.to_owned(),
            quantity,
            user: user.to_owned(),
            expect: Expect::Valid,
        }
    }

    /// The `POST /order` body.
    pub fn body(&self) -> Value {
        let mut body = json!({ "item": self.item, "quantity": self.quantity, "user": self.user });
        if self.expect == Expect::Declined {
            // Any value declines, as in the original; its examples send the string "null".
            body[saga::wire::message::PAYMENT_ERROR_FIELD] = json!("null");
        }
        body
    }
}

/// 1 to 5 units, cycling, so every item and user sees every quantity.
fn quantity(i: usize) -> u32 {
    u32::try_from(i % 5).unwrap_or(0) + 1
}

/// `n` valid orders over both items and both users: the four item-user pairs take turns,
/// with 1 to 5 units each (3 on average).
pub fn spread(n: usize) -> Vec<OrderSpec> {
    (0..n)
        .map(|i| OrderSpec::valid(ITEMS[i % 2].0, quantity(i / 4), USERS[(i / 2) % 2]))
        .collect()
}

/// `n` valid orders all for [`HOT_ITEM`], by both users, 1 to 5 units each.
pub fn hot(n: usize) -> Vec<OrderSpec> {
    (0..n)
        .map(|i| OrderSpec::valid(HOT_ITEM.0, quantity(i), USERS[i % 2]))
        .collect()
}

/// `n` orders like [`spread`]'s, every one asking for a payment error: each fails at the
/// last step and is compensated, the most expensive way a saga can end.
pub fn declined(n: usize) -> Vec<OrderSpec> {
    spread(n)
        .into_iter()
        .map(|mut order| {
            order.expect = Expect::Declined;
            order
        })
        .collect()
}

/// The smoke run's `n` orders: mostly valid, with every tenth asking for a payment error
/// and every tenth (another one) from an unknown user, so that both failure paths and their
/// compensations run.
pub fn smoke(n: usize) -> Vec<OrderSpec> {
    spread(n)
        .into_iter()
        .enumerate()
        .map(|(i, mut order)| {
            match i % 10 {
                3 => order.expect = Expect::Declined,
                7 => {
                    UNKNOWN_USER.clone_into(&mut order.user);
                    order.expect = Expect::UnknownUser;
                }
                _ => {}
            }
            order
        })
        .collect()
}

/// Units ordered per item.
pub fn demand(orders: &[OrderSpec]) -> std::collections::BTreeMap<String, u64> {
    let mut demand = std::collections::BTreeMap::new();
    for order in orders {
        *demand.entry(order.item.clone()).or_insert(0) += u64::from(order.quantity);
    }
    demand
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn spread_orders_cover_every_item_user_and_quantity_pair() {
        let orders = spread(1000);
        let pairs: BTreeSet<(String, String, u32)> = orders
            .iter()
            .map(|o| (o.item.clone(), o.user.clone(), o.quantity))
            .collect();
        assert_eq!(pairs.len(), 2 * 2 * 5);
        assert!(orders.iter().all(|o| o.expect == Expect::Valid));
        assert_eq!(demand(&orders).values().sum::<u64>(), 3000);
    }

    #[test]
    fn hot_orders_are_all_for_one_item_and_ask_three_units_on_average() {
        let orders = hot(1000);
        assert!(orders.iter().all(|o| o.item == HOT_ITEM.0));
        assert_eq!(demand(&orders)[HOT_ITEM.0], 3000);
    }

    #[test]
    fn declined_orders_all_ask_for_a_payment_error_over_every_item_and_user() {
        let orders = declined(100);
        assert!(orders.iter().all(|o| o.expect == Expect::Declined));
        assert!(
            orders
                .iter()
                .all(|o| o.body().get(saga::wire::message::PAYMENT_ERROR_FIELD).is_some())
        );
        let pairs: BTreeSet<(String, String)> =
            orders.iter().map(|o| (o.item.clone(), o.user.clone())).collect();
        assert_eq!(pairs.len(), 4);
    }

    #[test]
    fn smoke_orders_mix_in_declined_payments_and_unknown_users() {
        let orders = smoke(50);
        let count = |e| orders.iter().filter(|o| o.expect == e).count();
        assert_eq!(count(Expect::Declined), 5);
        assert_eq!(count(Expect::UnknownUser), 5);
        assert_eq!(count(Expect::Valid), 40);
        let declined = orders.iter().find(|o| o.expect == Expect::Declined);
        assert_eq!(
            declined.map(|o| o.body()[saga::wire::message::PAYMENT_ERROR_FIELD].clone()),
            Some(json!("null"))
        );
        assert!(
            orders
                .iter()
                .filter(|o| o.expect == Expect::UnknownUser)
                .all(|o| o.body()["user"] == UNKNOWN_USER)
        );
    }
}
