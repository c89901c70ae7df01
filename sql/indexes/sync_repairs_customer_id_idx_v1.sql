-- The repair deletes the rows of the customers it has synced: by customer id.
CREATE INDEX sync_repairs_customer_id_idx ON billing_sync.sync_repairs (customer_id);
