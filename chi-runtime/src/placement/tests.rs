use chi_sdk::types::{ContainerId, DomainQuery, NodeId, SubDomainId, subdomain};

use super::*;

fn nodes(ids: &[u32]) -> Vec<NodeId> {
    ids.iter().map(|&i| NodeId(i)).collect()
}

fn one(node: u32, container: u32) -> Target {
    Target::One(Located {
        node: NodeId(node),
        container: ContainerId(container),
    })
}

#[test]
fn spread_is_round_robin_in_node_order_whatever_the_input_order() {
    let p = Placement::spread(7, &nodes(&[3, 1, 2, 1])).unwrap();
    assert_eq!(p.nodes(), nodes(&[1, 2, 3, 1, 2, 3, 1]).as_slice());
    assert_eq!(
        p.on(NodeId(1)),
        vec![ContainerId(0), ContainerId(3), ContainerId(6)]
    );
    assert_eq!(p.on(NodeId(4)), vec![]);
    assert_eq!(p.span(), nodes(&[1, 2, 3]));
    // Every node's share is within one of the others'.
    for count in 1..40 {
        let p = Placement::spread(count, &nodes(&[1, 2, 3])).unwrap();
        let shares: Vec<usize> = (1..=3).map(|n| p.on(NodeId(n)).len()).collect();
        let (lo, hi) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
        assert!(hi - lo <= 1, "{count}: {shares:?}");
    }
    assert!(Placement::spread(0, &nodes(&[1])).is_err());
    assert!(Placement::spread(3, &[]).is_err());
    assert!(Placement::from_nodes(vec![]).is_err());
}

#[test]
fn queries_resolve_from_each_node() {
    // Containers 0..6 on nodes 1 2 3 1 2 3.
    let p = Placement::spread(6, &nodes(&[1, 2, 3])).unwrap();
    let here = NodeId(2);
    assert_eq!(p.resolve(DomainQuery::global_id(4), here), Ok(one(2, 4)));
    assert_eq!(p.resolve(DomainQuery::global_id(3), here), Ok(one(1, 3)));
    assert_eq!(p.resolve(DomainQuery::global_hash(11), here), Ok(one(3, 5)));
    // Local ids count this node's containers: 1 and 4 on node 2.
    assert_eq!(p.resolve(DomainQuery::local_id(0), here), Ok(one(2, 1)));
    assert_eq!(p.resolve(DomainQuery::local_id(1), here), Ok(one(2, 4)));
    assert_eq!(p.resolve(DomainQuery::local_hash(7), here), Ok(one(2, 4)));
    assert_eq!(p.resolve(DomainQuery::local(), NodeId(3)), Ok(one(3, 2)));
    match p.resolve(DomainQuery::global_bcast(), here).unwrap() {
        Target::All(all) => {
            assert_eq!(all.len(), 6);
            assert!(
                all.iter()
                    .enumerate()
                    .all(|(g, l)| l.container == ContainerId(g as u32))
            );
            assert_eq!(all[5].node, NodeId(3));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p.resolve(DomainQuery::dynamic(), here), Ok(Target::Dynamic));
}

#[test]
fn queries_that_name_nothing_say_why() {
    let p = Placement::spread(4, &nodes(&[1, 2])).unwrap();
    let e = p.resolve(DomainQuery::global_id(4), NodeId(1)).unwrap_err();
    assert!(
        e.to_string()
            .contains("names container 4, but the pool has 4"),
        "{e}"
    );
    let e = p.resolve(DomainQuery::local_id(2), NodeId(1)).unwrap_err();
    assert!(
        e.to_string().contains("has 2 container(s) on node 1"),
        "{e}"
    );
    let e = p.resolve(DomainQuery::local(), NodeId(9)).unwrap_err();
    assert!(e.to_string().contains("node 9 hosts none"), "{e}");
    assert!(e.to_string().contains("[1, 2]"), "{e}");
    let bad = DomainQuery { kind: 77, value: 0 };
    assert_eq!(p.resolve(bad, NodeId(1)), Err(ResolveError::BadKind(77)));
}

#[test]
fn addresses_in_each_subdomain() {
    let p = Placement::spread(5, &nodes(&[1, 2])).unwrap();
    // Container 3 is on node 2, its second there.
    let g = ContainerId(3);
    let at = |major, here| p.address(g, major, NodeId(here));
    assert_eq!(
        at(subdomain::GLOBAL, 1),
        Some(SubDomainId { major: 1, minor: 3 })
    );
    assert_eq!(
        at(subdomain::PHYSICAL_NODE, 1),
        Some(SubDomainId { major: 0, minor: 2 })
    );
    assert_eq!(
        at(subdomain::LOCAL, 2),
        Some(SubDomainId { major: 2, minor: 1 })
    );
    assert_eq!(at(subdomain::LOCAL, 1), None);
    assert_eq!(
        p.address(ContainerId(5), subdomain::GLOBAL, NodeId(1)),
        None
    );
    // A local address resolves back to the container.
    let SubDomainId { minor, .. } = at(subdomain::LOCAL, 2).unwrap();
    assert_eq!(
        p.resolve(DomainQuery::local_id(minor), NodeId(2)),
        Ok(one(2, 3))
    );
}
