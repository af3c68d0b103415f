-- The item catalogue splits what a bill does not have in scope into three buckets beside eligible
-- (政策范围内): fully self-pay (全自费), self-pay first (先行自付) and over-limit self-pay (超限价自付).
-- Statements and statistics total them per fund, clinic and day, so a settlement keeps the two that
-- cannot be derived; fully self-pay is total - eligible - self_pay_first - over_limit.
--
-- Rows settled before this migration keep NULL in both: their split is only inside their record,
-- and settled rows are never rewritten (nor would their seals verify if they were). Reports say how
-- much of a total comes from such rows rather than guess.
ALTER TABLE settlements
    ADD COLUMN self_pay_first bigint,
    ADD COLUMN over_limit bigint,
    ADD CONSTRAINT settlements_buckets_fit CHECK (
        (self_pay_first IS NULL) = (over_limit IS NULL)
        AND (self_pay_first IS NULL
             OR (self_pay_first >= 0 AND over_limit >= 0 AND eligible + self_pay_first + over_limit <= total))
    );
