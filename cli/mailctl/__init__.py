"""mailctl: deploy and verify Postfix + Dovecot or Cyrus IMAP from one Ansible inventory."""

__version__ = "0.1.0"
