//! Users and sessions.

use strata_shared::model::{Role, UserInfo};

use super::{Db, DbError};

/// A stored user.
#[derive(Debug, Clone)]
pub struct UserRow {
    /// Name.
    pub username: String,
    /// argon2 PHC string.
    pub password_hash: String,
    /// Role.
    pub role: Role,
}

/// A stored session.
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// User.
    pub username: String,
    /// Role of the user.
    pub role: Role,
    /// Expiry, Unix ms.
    pub expires_ms: i64,
}

fn role(s: &str) -> Result<Role, DbError> {
    Role::parse(s).ok_or_else(|| DbError::Corrupt(format!("role {s:?}")))
}

impl Db {
    /// Number of users.
    pub async fn user_count(&self) -> Result<i64, DbError> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }

    /// Adds a user.
    pub async fn insert_user(
        &self,
        username: &str,
        password_hash: &str,
        r: Role,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO users (username, password_hash, role, created_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(username)
        .bind(password_hash)
        .bind(r.as_str())
        .bind(strata_shared::now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Looks a user up.
    pub async fn user(&self, username: &str) -> Result<UserRow, DbError> {
        let (username, password_hash, r): (String, String, String) =
            sqlx::query_as("SELECT username, password_hash, role FROM users WHERE username = $1")
                .bind(username)
                .fetch_one(&self.pool)
                .await?;
        Ok(UserRow {
            username,
            password_hash,
            role: role(&r)?,
        })
    }

    /// All users.
    pub async fn users(&self) -> Result<Vec<UserInfo>, DbError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT username, role FROM users ORDER BY username")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(username, r)| {
                Ok(UserInfo {
                    username,
                    role: role(&r)?,
                })
            })
            .collect()
    }

    /// Stores a session by token digest.
    pub async fn insert_session(
        &self,
        digest: &str,
        username: &str,
        expires_ms: i64,
    ) -> Result<(), DbError> {
        let now = strata_shared::now_ms();
        sqlx::query("DELETE FROM sessions WHERE expires_ms < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query("INSERT INTO sessions (token_digest, username, created_ms, expires_ms) VALUES ($1, $2, $3, $4)")
            .bind(digest)
            .bind(username)
            .bind(now)
            .bind(expires_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A live session by token digest.
    pub async fn session(&self, digest: &str) -> Result<SessionRow, DbError> {
        let (username, r, expires_ms): (String, String, i64) = sqlx::query_as(
            "SELECT s.username, u.role, s.expires_ms FROM sessions s JOIN users u ON u.username = s.username
             WHERE s.token_digest = $1 AND s.expires_ms > $2",
        )
        .bind(digest)
        .bind(strata_shared::now_ms())
        .fetch_one(&self.pool)
        .await?;
        Ok(SessionRow {
            username,
            role: role(&r)?,
            expires_ms,
        })
    }

    /// Ends a session.
    pub async fn delete_session(&self, digest: &str) -> Result<(), DbError> {
        sqlx::query("DELETE FROM sessions WHERE token_digest = $1")
            .bind(digest)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{on_both_backends, TestDb};
    use super::*;

    on_both_backends!(users_and_sessions);

    async fn users_and_sessions(db: TestDb) {
        db.insert_user("ann", "h", Role::Operator).await.unwrap();
        assert!(matches!(
            db.insert_user("ann", "h", Role::Admin).await,
            Err(DbError::Duplicate)
        ));
        assert_eq!(db.user("ann").await.unwrap().role, Role::Operator);
        assert!(matches!(db.user("bob").await, Err(DbError::NotFound)));
        db.insert_session("d1", "ann", strata_shared::now_ms() + 60_000)
            .await
            .unwrap();
        db.insert_session("d2", "ann", strata_shared::now_ms() - 1)
            .await
            .unwrap();
        assert_eq!(db.session("d1").await.unwrap().username, "ann");
        assert!(
            matches!(db.session("d2").await, Err(DbError::NotFound)),
            "expired sessions do not resume"
        );
        db.delete_session("d1").await.unwrap();
        assert!(db.session("d1").await.is_err());
    }
}
