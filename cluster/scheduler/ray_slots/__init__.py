"""Slots over Ray (`scheduler.slot_mode: ray`): `runner.RayRunner` is the `SlotRunner`, `actor.SlotActor` keeps the
usual slot worker on its node, `nodes` matches Ray nodes to configured ones, `backend` is the one place Ray is
imported (joining the cluster, placing actors)."""
