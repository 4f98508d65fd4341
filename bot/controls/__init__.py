"""What admins control: channel and workspace settings, daily token budgets priced from a published
table, `/switchboard config|usage`."""
