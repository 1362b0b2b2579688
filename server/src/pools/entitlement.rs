//! How a tree's policy becomes numbers a host can enforce: CPU weights that honour
//! reservations under contention, and a cluster pool's limit and reservation divided among
//! the hosts that run its VMs.

/// Weights for one group of siblings that share `capacity` (MHz): each sibling gets its
/// shares, raised where needed so that under full contention it still receives at least its
/// reservation (`weight / Σ weights ≥ reservation / capacity`). Shares stay work-conserving:
/// an idle sibling's weight costs the others nothing.
pub fn weights(siblings: &[(u64, u64)], capacity: u64) -> Vec<u64> {
    let capacity = capacity.max(1) as f64;
    let frac: Vec<f64> = siblings
        .iter()
        .map(|(_, r)| (*r as f64 / capacity).min(0.95))
        .collect();
    let base: f64 = siblings
        .iter()
        .map(|(s, _)| *s as f64)
        .sum::<f64>()
        .max(1.0);
    // Fixed point of T = Σ max(shares_i, f_i T); it converges while Σ f_i < 1 (admission
    // control keeps reservations within capacity; the 0.95 cap keeps it finite).
    let mut total = base;
    for _ in 0..100 {
        let next: f64 = siblings
            .iter()
            .zip(&frac)
            .map(|((s, _), f)| (*s as f64).max(f * total))
            .sum();
        if (next - total).abs() < 0.5 {
            total = next;
            break;
        }
        total = next.min(base * 1e6);
    }
    siblings
        .iter()
        .zip(&frac)
        .map(|((s, _), f)| ((*s as f64).max((f * total).ceil())) as u64)
        .collect()
}

/// The part of a cluster pool's amount that one host enforces: proportional to the demand
/// (vCPUs of running VMs in the pool's subtree) on that host. With no demand anywhere every
/// host gets the whole amount (nothing runs, so nothing is over-committed).
pub fn host_share(amount: u64, demand_here: u64, demand_total: u64) -> u64 {
    if demand_total == 0 {
        return amount;
    }
    ((amount as u128 * demand_here as u128).div_ceil(demand_total as u128)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_without_reservations_are_the_shares() {
        assert_eq!(weights(&[(2000, 0), (1000, 0)], 2600), vec![2000, 1000]);
    }

    #[test]
    fn a_reservation_wins_its_share_of_a_contended_group() {
        // A low-share VM reserving 3/4 of the capacity against a high-share sibling.
        let w = weights(&[(500, 1950), (2000, 0)], 2600);
        let frac = w[0] as f64 / (w[0] + w[1]) as f64;
        assert!(frac >= 0.75 - 1e-3, "{w:?} gives {frac}");
        // A reservation smaller than what the shares give already changes nothing.
        assert_eq!(weights(&[(2000, 100), (1000, 0)], 2600), vec![2000, 1000]);
    }

    #[test]
    fn cluster_amounts_split_by_demand() {
        assert_eq!(host_share(6000, 2, 3), 4000);
        assert_eq!(host_share(6000, 1, 3), 2000);
        assert_eq!(host_share(6000, 0, 0), 6000);
        assert_eq!(
            host_share(1, 1, 3),
            1,
            "rounded up, never zero where VMs run"
        );
    }
}
