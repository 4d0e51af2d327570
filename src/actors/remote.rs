//! Which domain messages cross nodes in cluster mode: [`remote_messages!`] gives each listed message its
//! [`crate::runtime::Remote`] wire name (its type name; a mutation's keyed form `Idempotent<M>`, which the HTTP
//! layer sends for a request with an `Idempotency-Key`, travels as `Idempotent<M>`) and writes the file's
//! `accept_remote`, which the kind's `Entity::accepts` calls so that the runtime routes those calls to the node
//! serving the actor.

/// `remote_messages! { Kind; mutations: A, B; reads: C; commands: D; }` — every group optional but in this order.
/// The wire name is the type name: renaming a listed message breaks calls between nodes of different versions.
macro_rules! remote_messages {
    (
        $kind:ty;
        $(mutations: $($m:ident),+ $(,)?;)?
        $(reads: $($r:ident),+ $(,)?;)?
        $(commands: $($c:ident),+ $(,)?;)?
    ) => {
        $($(
            impl $crate::runtime::Remote for $m { const NAME: &'static str = stringify!($m); }
            impl $crate::runtime::idempotency::RemoteIdempotent for $m {
                const IDEMPOTENT_NAME: &'static str = concat!("Idempotent<", stringify!($m), ">");
            }
        )+)?
        $($(impl $crate::runtime::Remote for $r { const NAME: &'static str = stringify!($r); })+)?
        $($(impl $crate::runtime::Remote for $c { const NAME: &'static str = stringify!($c); })+)?

        /// Registers this file's messages as callable from other nodes (see `crate::actors::remote`).
        pub(super) fn accept_remote(accepts: &mut $crate::runtime::Accepts<$kind>) {
            $($(
                accepts.remote_mutation::<$m>();
                accepts.remote_mutation::<$crate::runtime::Idempotent<$m>>();
            )+)?
            $($(accepts.remote_read::<$r>();)+)?
            $($(accepts.remote_command::<$c>();)+)?
        }
    };
}

pub(crate) use remote_messages;

#[cfg(test)]
mod tests {
    use crate::actors::{
        audit_log::AuditLog, auth_directory::AuthDirectory, github_data::GitHubData, organization::Organization,
        repository::Repository, session::Session, task::Task, user::User,
    };
    use crate::runtime::{Accepts, Entity};

    /// The kind's remote wire names; a name given twice would leave one message's handler unreachable.
    fn remote_names<E: Entity>() -> Vec<String> {
        let mut accepts = Accepts::<E>::new();
        E::accepts(&mut accepts);
        assert_eq!(accepts.remote.len(), accepts.codecs.len(), "{}: a wire name is used twice", E::KIND);
        let mut names: Vec<String> =
            accepts.remote.keys().map(|k| k.rsplit('\0').next().unwrap_or(k).to_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn every_kind_registers_its_messages_under_distinct_names() {
        let kinds = [
            remote_names::<AuditLog>(),
            remote_names::<AuthDirectory>(),
            remote_names::<GitHubData>(),
            remote_names::<Organization>(),
            remote_names::<Repository>(),
            remote_names::<Session>(),
            remote_names::<Task>(),
            remote_names::<User>(),
        ];
        assert!(kinds.iter().all(|names| !names.is_empty()));
        // What a request on any node needs, whichever node serves the actors.
        let expect = |names: &[String], name: &str| assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        expect(&kinds[1], "ResolveAuthSession");
        expect(&kinds[3], "CreateOrganization");
        expect(&kinds[3], "GetOrganizationSnapshot");
        expect(&kinds[6], "GetTaskDetail");
        expect(&kinds[7], "GetAppSnapshot");
        expect(&kinds[7], "StartAuthSession");
    }
}
