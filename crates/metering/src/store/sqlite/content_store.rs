//! Opt-in content logs on SQLite.

use super::*;
use crate::store::ContentStore;

#[async_trait]
impl ContentStore for SqliteStore {
    async fn insert_content(&self, batch: &[ContentRecord]) -> Result<()> {
        content::insert(&self.writer, batch).await
    }

    async fn content_records(
        &self,
        tenant_id: &str,
        request_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ContentRecord>> {
        content::list(&self.reader, tenant_id, request_id, limit).await
    }

    async fn erase_content(&self, tenant_id: &str) -> Result<u64> {
        content::erase(&self.writer, tenant_id).await
    }

    async fn delete_expired_content(&self, now_ms: i64) -> Result<u64> {
        content::delete_expired(&self.writer, now_ms).await
    }
}
