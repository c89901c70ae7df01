-- Single-row update of another column: the sync has nothing to do.
\set id random(1, :customers)
\set n random(1, 1000000000)
UPDATE public.customers SET email = 'u' || :n || '@example.com' WHERE id = :id;
