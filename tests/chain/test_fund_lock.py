"""FundLock on a real (in-process) EVM: deposits, settlement batches, releases and withdrawals."""

from .conftest import assert_reverts, events, send

BATCH = bytes.fromhex("11" * 32)
OTHER_BATCH = bytes.fromhex("22" * 32)


def deposit(w3, token, fund_lock, client, amount):
    send(w3, token.functions.approve(fund_lock.address, amount), client)
    return send(w3, fund_lock.functions.deposit(token.address, amount), client)


def test_deposit_credits_balance_and_emits_event(w3, accounts, token, fund_lock):
    _, alice, _, _ = accounts
    deposit(w3, token, fund_lock, alice, 300)
    receipt = deposit(w3, token, fund_lock, alice, 200)

    assert fund_lock.functions.balances(token.address, alice).call() == 500
    assert token.functions.balanceOf(fund_lock.address).call() == 500
    assert token.functions.balanceOf(alice).call() == 1_000_000 - 500
    assert events(fund_lock.events.Deposit, receipt) == [
        {"client": alice, "token": token.address, "amount": 200, "balance": 500}]


def test_deposit_without_allowance_reverts(w3, accounts, token, fund_lock):
    _, alice, _, _ = accounts
    assert_reverts(w3, fund_lock.functions.deposit(token.address, 1), alice)
    assert fund_lock.functions.balances(token.address, alice).call() == 0


def test_settle_applies_net_zero_batch(w3, accounts, token, fund_lock):
    operator, alice, bob, _ = accounts
    deposit(w3, token, fund_lock, alice, 100)
    receipt = send(w3, fund_lock.functions.settle(BATCH, token.address, [alice, bob], [-30, 30]), operator)

    assert fund_lock.functions.balances(token.address, alice).call() == 70
    assert fund_lock.functions.balances(token.address, bob).call() == 30
    assert fund_lock.functions.applied(BATCH).call()
    assert events(fund_lock.events.BatchSettled, receipt) == [{"batch_id": BATCH, "token": token.address, "count": 2}]
    moved = [{"batch_id": BATCH, "client": alice, "token": token.address, "amount": -30},
             {"batch_id": BATCH, "client": bob, "token": token.address, "amount": 30}]
    assert events(fund_lock.events.Moved, receipt) == moved
    # The backend finds a batch's movements by its indexed id.
    logs = fund_lock.events.Moved().get_logs(from_block=0, argument_filters={"batch_id": BATCH})
    assert [dict(e.args) for e in logs] == moved


def test_settle_checks_final_balances_whatever_the_entry_order(w3, accounts, token, fund_lock):
    # Bob (balance 0) pays 10 before he is credited 10 in the same batch: his final balance is 0.
    operator, alice, bob, _ = accounts
    deposit(w3, token, fund_lock, alice, 10)
    send(w3, fund_lock.functions.settle(BATCH, token.address, [bob, alice, bob, alice], [-10, 10, 10, -10]), operator)
    assert fund_lock.functions.balances(token.address, alice).call() == 10
    assert fund_lock.functions.balances(token.address, bob).call() == 0


def test_settle_refusals(w3, accounts, token, fund_lock):
    operator, alice, bob, mallory = accounts
    deposit(w3, token, fund_lock, alice, 100)
    settle = fund_lock.functions.settle
    send(w3, settle(BATCH, token.address, [alice, bob], [-30, 30]), operator)

    assert_reverts(w3, settle(BATCH, token.address, [alice, bob], [-1, 1]), operator, "batch already applied")
    assert_reverts(w3, settle(OTHER_BATCH, token.address, [alice, bob], [-30, 31]), operator, "does not net to zero")
    assert_reverts(w3, settle(OTHER_BATCH, token.address, [alice, bob], [31, -31]), operator, "would go negative")
    assert_reverts(w3, settle(OTHER_BATCH, token.address, [alice, bob], [-1, 1]), mallory, "not operator")
    assert_reverts(w3, settle(OTHER_BATCH, token.address, [alice, bob], [0]), operator, "length mismatch")
    # Nothing moved past the first batch, and the refused id is still free.
    assert fund_lock.functions.balances(token.address, alice).call() == 70
    assert fund_lock.functions.balances(token.address, bob).call() == 30
    assert not fund_lock.functions.applied(OTHER_BATCH).call()


def test_settle_and_release_share_batch_ids(w3, accounts, token, fund_lock):
    operator, alice, bob, _ = accounts
    deposit(w3, token, fund_lock, alice, 100)
    send(w3, fund_lock.functions.settle(BATCH, token.address, [alice, bob], [-30, 30]), operator)
    assert_reverts(w3, fund_lock.functions.release(BATCH, token.address, [alice], [1]), operator,
                   "batch already applied")
    send(w3, fund_lock.functions.release(OTHER_BATCH, token.address, [alice], [1]), operator)
    assert_reverts(w3, fund_lock.functions.settle(OTHER_BATCH, token.address, [alice, bob], [-1, 1]), operator,
                   "batch already applied")


def test_release_then_withdraw_pays_the_client(w3, accounts, token, fund_lock):
    operator, alice, _, _ = accounts
    deposit(w3, token, fund_lock, alice, 100)
    receipt = send(w3, fund_lock.functions.release(BATCH, token.address, [alice], [40]), operator)
    assert events(fund_lock.events.Released, receipt) == [
        {"batch_id": BATCH, "client": alice, "token": token.address, "amount": 40}]
    assert fund_lock.functions.balances(token.address, alice).call() == 60
    assert fund_lock.functions.withdrawable(token.address, alice).call() == 40

    receipt = send(w3, fund_lock.functions.withdraw(token.address, 40), alice)
    assert events(fund_lock.events.Withdrawal, receipt) == [{"client": alice, "token": token.address, "amount": 40}]
    assert fund_lock.functions.withdrawable(token.address, alice).call() == 0
    assert fund_lock.functions.balances(token.address, alice).call() == 60
    assert token.functions.balanceOf(alice).call() == 1_000_000 - 60
    assert token.functions.balanceOf(fund_lock.address).call() == 60


def test_withdraw_cannot_take_locked_funds(w3, accounts, token, fund_lock):
    operator, alice, bob, _ = accounts
    deposit(w3, token, fund_lock, alice, 100)
    withdraw = fund_lock.functions.withdraw
    # Deposited but not released: locked, so not even 1 unit can leave.
    assert_reverts(w3, withdraw(token.address, 1), alice, "exceeds withdrawable")
    send(w3, fund_lock.functions.release(BATCH, token.address, [alice], [40]), operator)
    assert_reverts(w3, withdraw(token.address, 41), alice, "exceeds withdrawable")
    # Another client cannot pull Alice's released funds.
    assert_reverts(w3, withdraw(token.address, 1), bob, "exceeds withdrawable")
    assert token.functions.balanceOf(fund_lock.address).call() == 100


def test_release_refusals(w3, accounts, token, fund_lock):
    operator, alice, _, mallory = accounts
    deposit(w3, token, fund_lock, alice, 100)
    assert_reverts(w3, fund_lock.functions.release(BATCH, token.address, [alice], [101]), operator,
                   "release exceeds balance")
    assert_reverts(w3, fund_lock.functions.release(BATCH, token.address, [mallory], [1]), mallory, "not operator")
    assert fund_lock.functions.withdrawable(token.address, alice).call() == 0


def test_set_operator(w3, accounts, token, fund_lock):
    operator, alice, bob, mallory = accounts
    assert_reverts(w3, fund_lock.functions.set_operator(mallory), mallory, "not operator")
    send(w3, fund_lock.functions.set_operator(bob), operator)
    assert fund_lock.functions.operator().call() == bob
    assert_reverts(w3, fund_lock.functions.settle(BATCH, token.address, [], []), operator, "not operator")
    send(w3, fund_lock.functions.settle(BATCH, token.address, [], []), bob)
