"""The LaunchAgent template, shipped as package data so `dictated service` finds it in any install."""
