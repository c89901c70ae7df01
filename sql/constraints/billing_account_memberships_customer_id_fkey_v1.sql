-- Memberships belong to customers: deleting a customer removes its memberships, changing its id
-- carries them along, so that no customer write can fail on these rows.
-- Adding a foreign key takes SHARE ROW EXCLUSIVE on public.customers (writes wait) and, when
-- validated at once, holds it while every membership is checked. So it is added NOT VALID (enforced
-- for every new write from now on, nothing scanned) under lock retries in revision 0001, and
-- validated by revision 0002 in a transaction of its own, with locks that block no writer.
ALTER TABLE public.billing_account_memberships
    ADD CONSTRAINT billing_account_memberships_customer_id_fkey
    FOREIGN KEY (customer_id) REFERENCES public.customers (id) ON DELETE CASCADE ON UPDATE CASCADE
    NOT VALID;
