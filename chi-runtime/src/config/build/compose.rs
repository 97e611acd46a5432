//! The `compose` list: pools made at start, each checked (names and ids
//! unique, ids not reserved, `containers` only on global pools and within
//! bounds, no `id` on a global pool: the cluster chooses).

use super::*;

impl Builder<'_> {
    pub(super) fn compose(&self, list: Item<Vec<RawPool>>) -> Result<Vec<PoolSpec>, ConfigError> {
        let user = list.from_user;
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut ids: HashMap<u64, usize> = HashMap::new();
        let mut pools = Vec::with_capacity(list.value.len());
        for (i, pool) in list.value.into_iter().enumerate() {
            let key = |field: &str| format!("compose[{i}].{field}");
            let module = pool.module.value.trim();
            if module.is_empty() || module.contains(char::is_whitespace) {
                return Err(self.bad_in(
                    user,
                    &pool.module,
                    &key("module"),
                    format!("`{module}` is not a ChiMod library name; expected a name such as chimaera_bdev"),
                ));
            }
            let name = pool.name.value.trim();
            if name.is_empty() {
                return Err(self.bad_in(
                    user,
                    &pool.name,
                    &key("name"),
                    "empty pool name; expected a name",
                ));
            }
            if let Some(first) = names.insert(name.to_owned(), i) {
                return Err(self.bad_in(
                    user,
                    &pool.name,
                    &key("name"),
                    format!("pool name `{name}` is already used by compose[{first}]; expected a unique name"),
                ));
            }
            if let Some(id) = &pool.id {
                if RESERVED_POOL_IDS.contains(&id.value) {
                    return Err(self.bad_in(
                        user,
                        id,
                        &key("id"),
                        format!("pool id {} is reserved (0: no pool, 1: the admin pool); expected another id", id.value),
                    ));
                }
                if let Some(first) = ids.insert(id.value, i) {
                    return Err(self.bad_in(
                        user,
                        id,
                        &key("id"),
                        format!(
                            "pool id {} is already used by compose[{first}]; expected a unique id",
                            id.value
                        ),
                    ));
                }
            }
            let global = pool.query.value == PoolQuery::Global;
            if let (true, Some(id)) = (global, &pool.id) {
                return Err(self.bad_in(
                    user,
                    id,
                    &key("id"),
                    format!(
                        "pool id {} on a global pool: the cluster chooses the ids of its pools; \
                         remove id or use query: local",
                        id.value
                    ),
                ));
            }
            if let Some(n) = &pool.containers {
                if !global {
                    return Err(self.bad_in(
                        user,
                        n,
                        &key("containers"),
                        "containers on a local pool (it has one container); use query: global \
                         or remove containers",
                    ));
                }
                if n.value == 0 || n.value > MAX_COMPOSE_CONTAINERS {
                    return Err(self.bad_in(
                        user,
                        n,
                        &key("containers"),
                        format!(
                            "{} containers; expected 1 to {MAX_COMPOSE_CONTAINERS}",
                            n.value
                        ),
                    ));
                }
            }
            pools.push(PoolSpec {
                module: module.to_owned(),
                name: name.to_owned(),
                query: pool.query.value,
                id: pool.id.map(|id| id.value),
                args: pool.args.map(|args| args.value),
                containers: pool.containers.map(|n| n.value),
            });
        }
        Ok(pools)
    }
}
