"""`seam user`: users tied to contract people, passwords never on the command line, argon2id at rest."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from tests.control.node import CONTRACT, PASSWORD, seam, seam_inline


def _contract(tmp_path: Path) -> str:
    path = tmp_path / "seam.yaml"
    path.write_text(CONTRACT)
    return str(path)


def test_add_list_passwd_remove(tmp_path: Path) -> None:
    contract = _contract(tmp_path)
    added = seam("user", "add", contract, "olga", "--person", "olga", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert "role operator" in added.stdout  # read from the person's contract entry ("shift operator", OT side)
    store = tmp_path / "data" / "control" / "users.json"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    document = json.loads(store.read_text())
    assert document["users"]["olga"]["password"].startswith("$argon2id$")
    assert PASSWORD not in store.read_text()

    # The rest in this process: the same command code, without an interpreter start each.
    _, listed, _ = seam_inline("user", "list", contract)
    assert "olga" in listed and "operator" in listed and "Olga Ops" in listed

    before = document["users"]["olga"]["password"]
    code, _, err = seam_inline("user", "passwd", contract, "olga", stdin="another long passphrase\n")
    assert code == 0, err
    assert json.loads(store.read_text())["users"]["olga"]["password"] != before

    code, out, err = seam_inline("user", "token", contract, "olga", "--name", "grafana", "--scope", "read")
    assert code == 0, err
    secret = out.strip()
    assert secret.startswith("seam_") and secret not in store.read_text()

    code, out, _ = seam_inline("user", "remove", contract, "olga")
    assert code == 0 and "1 token(s) revoked" in out
    assert "olga" not in seam_inline("user", "list", contract)[1]


def test_token_changes_from_the_command_line_are_on_record_or_do_not_happen(tmp_path: Path) -> None:
    contract = _contract(tmp_path)
    assert seam_inline("user", "add", contract, "olga", "--person", "olga", stdin=PASSWORD + "\n")[0] == 0
    code, _, err = seam_inline("user", "token", contract, "olga", "--name", "grafana", "--scope", "read")
    assert code == 0, err
    token_id = err.split()[1]
    assert seam_inline("user", "revoke", contract, token_id)[0] == 0
    code, _, err = seam_inline("user", "token", contract, "olga", "--name", "scada", "--scope", "read")
    assert code == 0, err
    second = err.split()[1]
    assert seam_inline("user", "remove", contract, "olga")[0] == 0
    log = tmp_path / "data" / "authority" / "audit.log"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["kind"], r["actor"], r["subject"]) for r in records] == [
        ("user.add", "olga", "olga"),
        ("token.create", "olga", token_id),
        ("token.revoke", "olga", token_id),
        ("token.create", "olga", second),
        ("user.remove", "olga", "olga"),
        ("token.revoke", "olga", second),
    ]
    assert seam_inline("user", "add", contract, "olga", "--person", "olga", stdin=PASSWORD + "\n")[0] == 0
    log.unlink()
    log.symlink_to("/dev/full")  # a full disk
    code, out, err = seam_inline("user", "token", contract, "olga", "--name", "grafana", "--scope", "read")
    assert code == 2 and "the token was not created" in err and "seam_" not in out
    document = json.loads((tmp_path / "data" / "control" / "users.json").read_text())
    assert all(t["revoked"] for t in document["tokens"].values())
    # Access granted off the record is not granted.
    code, _, err = seam_inline("user", "add", contract, "ivan", "--person", "olga", stdin=PASSWORD + "\n")
    assert code == 2 and "NOT added" in err
    assert "ivan" not in json.loads((tmp_path / "data" / "control" / "users.json").read_text())["users"]


def test_refusals_are_one_line_and_exit_2(tmp_path: Path) -> None:
    contract = _contract(tmp_path)
    cases = [
        (["add", contract, "x1", "--person", "nobody"], PASSWORD, "has no person 'nobody'"),
        (["add", contract, "olga", "--person", "olga", "--role", "admin"], PASSWORD, "only a person of the seam side"),
        (["add", contract, "ivan", "--person", "ivan", "--role", "operator"], PASSWORD, "only people of the OT side"),
        (["add", contract, "ivan", "--person", "ivan", "--role", "seam-owner"], PASSWORD, "seam_owner"),
        (["add", contract, "olga", "--person", "olga"], "short\n", "too short"),
        (["add", contract, "olga", "--person", "olga"], "", "no password on standard input"),
        (["add", contract, "Bad Name", "--person", "olga"], PASSWORD, "is not a user name"),
        (["passwd", contract, "nobody"], PASSWORD, "no user nobody"),
        (["remove", contract, "nobody"], "", "no user nobody"),
        (
            ["add", str(Path(contract).with_name("missing.yaml")), "olga", "--person", "olga"],
            PASSWORD,
            "cannot be used",
        ),
    ]
    for args, stdin, message in cases:
        code, out, err = seam_inline("user", *args, stdin=stdin + ("\n" if stdin and not stdin.endswith("\n") else ""))
        assert code == 2, (args, out, err)
        assert message in err, (args, err)
        assert "Traceback" not in err


def test_the_password_is_never_an_argument(tmp_path: Path) -> None:
    contract = _contract(tmp_path)
    code, _, err = seam_inline("user", "add", contract, "olga", "--person", "olga", "--password", PASSWORD)
    assert code == 2 and "No such option" in err


def test_a_second_user_with_the_same_name_is_refused(tmp_path: Path) -> None:
    contract = _contract(tmp_path)
    assert seam_inline("user", "add", contract, "sam", "--person", "sam", stdin=PASSWORD + "\n")[0] == 0
    code, _, err = seam_inline("user", "add", contract, "sam", "--person", "sam", stdin=PASSWORD + "\n")
    assert code == 2 and "already exists" in err
