"""Specimen materials: mean atomic number, SE yield, backscatter coefficient, insulator flag.

Composition-derived quantities use mass fractions: the mean atomic number
``Z̄ = Σ wᵢ Zᵢ`` and the backscatter coefficient of a compound ``η = Σ wᵢ η(Zᵢ)``
(Castaing's mass-fraction rule; Heinrich 1966, "Electron probe microanalysis", p. 159).

``se_yield`` is the secondary-electron yield δ per primary electron at about 5 keV, normal
incidence. They are rounded, representative values read from compilations of measured
yields (D. C. Joy, "A database on electron-solid interactions", Scanning 17 (1995) 270;
H. Seiler, J. Appl. Phys. 54 (1983) R1). Measured yields scatter by ±50 % with surface
state; only their ratios (material contrast) matter to the twin.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

# Element: (Z, standard atomic weight in g/mol; IUPAC 2021, rounded).
_ELEMENTS: dict[str, tuple[int, float]] = {
    "H": (1, 1.008),
    "C": (6, 12.011),
    "O": (8, 15.999),
    "Al": (13, 26.982),
    "Si": (14, 28.085),
    "Ti": (22, 47.867),
    "Fe": (26, 55.845),
    "Cu": (29, 63.546),
    "Ag": (47, 107.868),
    "Pt": (78, 195.084),
    "Au": (79, 196.967),
}


def backscatter_coefficient(z: float) -> float:
    """Backscatter coefficient η of an element at normal incidence.

    Reuter's fit, W. Reuter, Proc. 6th Int. Conf. X-ray Optics and Microanalysis (1972) 121:
    η = −0.0254 + 0.016 Z − 1.86e−4 Z² + 8.3e−7 Z³ (valid for beam energies ≳ 5 keV).
    """
    if not (math.isfinite(z) and 1.0 <= z <= 100.0):
        raise ValueError(f"z = {z}: must be an atomic number in [1, 100]")
    return max(-0.0254 + 0.016 * z - 1.86e-4 * z**2 + 8.3e-7 * z**3, 0.0)


@dataclass(frozen=True)
class Material:
    """One material. Densities in kg/m³; ``se_yield`` is δ at ~5 keV (see module docstring)."""

    name: str
    composition: tuple[tuple[str, int], ...]   # (element, atoms per formula unit)
    density_kg_m3: float
    se_yield: float
    insulator: bool

    def _mass_fractions(self) -> list[tuple[int, float, float]]:
        masses = [(_ELEMENTS[e][0], _ELEMENTS[e][1], n * _ELEMENTS[e][1]) for e, n in self.composition]
        total = sum(m for _, _, m in masses)
        return [(z, a, m / total) for z, a, m in masses]

    @property
    def z_eff(self) -> float:
        """Mass-weighted mean atomic number Z̄."""
        return sum(w * z for z, _, w in self._mass_fractions())

    @property
    def a_eff(self) -> float:
        """Mass-weighted mean atomic weight (g/mol)."""
        return sum(w * a for _, a, w in self._mass_fractions())

    @property
    def bse_eta(self) -> float:
        """Backscatter coefficient at normal incidence (mass-fraction rule over Reuter's η(Z))."""
        return sum(w * backscatter_coefficient(z) for z, _, w in self._mass_fractions())

    def range_m(self, energy_ev: float) -> float:
        """Kanaya–Okayama electron range (m) at beam energy ``energy_ev``.

        R = 0.0276 A E^1.67 / (Z^0.889 ρ) µm with E in keV, ρ in g/cm³
        (K. Kanaya, S. Okayama, J. Phys. D 5 (1972) 43), mean Z and A of the compound.
        """
        if not (math.isfinite(energy_ev) and 50.0 <= energy_ev <= 1e6):
            raise ValueError(f"energy_ev = {energy_ev}: must be in [50, 1e6] eV")
        e_kev = energy_ev / 1e3
        rho_g_cm3 = self.density_kg_m3 / 1e3
        return 0.0276e-6 * self.a_eff * e_kev**1.67 / (self.z_eff**0.889 * rho_g_cm3)


MATERIALS: dict[str, Material] = {m.name: m for m in (
    Material("Si", (("Si", 1),), 2329.0, 0.20, False),
    Material("C", (("C", 1),), 2000.0, 0.10, False),            # amorphous carbon film / tape
    Material("TiO2", (("Ti", 1), ("O", 2)), 4230.0, 0.45, True),  # rutile
    Material("SiO2", (("Si", 1), ("O", 2)), 2200.0, 0.65, True),  # fused silica
    Material("Al2O3", (("Al", 2), ("O", 3)), 3950.0, 0.80, True),
    Material("Fe3O4", (("Fe", 3), ("O", 4)), 5170.0, 0.30, False),  # magnetite conducts
    Material("Cu", (("Cu", 1),), 8960.0, 0.30, False),
    Material("Ag", (("Ag", 1),), 10490.0, 0.40, False),
    Material("Pt", (("Pt", 1),), 21450.0, 0.47, False),
    Material("Au", (("Au", 1),), 19300.0, 0.45, False),
    Material("polystyrene", (("C", 8), ("H", 8)), 1050.0, 0.20, True),
)}

MATERIAL_NAMES: tuple[str, ...] = tuple(MATERIALS)


def get_material(name: str) -> Material:
    """The material called ``name``; ValueError naming the allowed ones otherwise."""
    try:
        return MATERIALS[name]
    except (KeyError, TypeError):
        raise ValueError(f"material = {name!r}: must be one of {', '.join(MATERIAL_NAMES)}") from None


def material_code(name: str) -> int:
    """Index of ``name`` in ``MATERIAL_NAMES`` (ValueError if unknown)."""
    get_material(name)
    return MATERIAL_NAMES.index(name)
