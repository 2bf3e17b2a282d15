"""The domain's plain values and formats, on the ground floor: every layer may import this
package, and it imports none of them (how times and text are read and made safe)."""
