from ledger.models import Account, Token
from ledger.service import account_names, open_account, token_owner
from sqlsandbox import seed


@seed(scope="module")
def admin_token(layer):
    with layer.session() as session:
        admin = Account(name="admin")
        session.add(admin)
        session.flush()
        session.add(Token(account_id=admin.id, value="s3cret"))
        session.commit()
    return "s3cret"


def test_token_is_valid(admin_token):
    assert token_owner(admin_token) == "admin"


def test_open_account(admin_token):
    open_account("ann")
    assert account_names() == ["admin", "ann"]


def test_accounts_start_with_admin(admin_token):
    assert account_names() == ["admin"]
