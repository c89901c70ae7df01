-- Members of an account ("who pays through account Z?"), and the foreign key check
-- when an account row is deleted by hand.
CREATE INDEX billing_account_memberships_billing_account_id_idx
    ON public.billing_account_memberships (billing_account_id);
