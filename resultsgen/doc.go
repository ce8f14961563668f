// Package resultsgen replays the Puebla 2024 PREP election night as a results
// tree, one cut at a time, for prepcast's demo, tests and benchmarks.
//
// The source of truth is the IEE Puebla's final (03/06/2024 20:00 UTC-6)
// per-acta databases of the three elections, Gubernatura (GUB), Diputaciones
// Locales (DIP_LOC) and Ayuntamientos (AYUN), embedded zstd-compressed (see
// data/PROVENANCE.md). A [Night] is a sequence of cuts; cut k at
// [Night.CutTime] shows the IEE data as it stood at [Night.ReplayTime]:
//
//   - An acta with a verification time (FECHA_HORA_VERIFICACION) appears at
//     that time. The IEE publishes an acta once verified, not once captured:
//     replayed this way the 18:00 Gubernatura cut matches the IEE's own 18:00
//     file on every timed row, whereas capture times would misplace 13 rows.
//   - A "SIN ACTA" row carries no time; it appears with its district's (or
//     municipality's) last verified acta, as one batch.
//   - A "FUERA DE CATALOGO" row appears at its FECHA_HORA_ACOPIO; before that
//     it is absent, like in the IEE files.
//   - Before it appears, a row is shown as the IEE shows an acta not yet
//     registered: identification, LISTA_NOMINAL and REPRESENTANTES_PP_CI
//     kept, every other cell "-" (or "N/A" where the casilla type has none),
//     TOTAL_VOTOS_CALCULADO 0. Rows not registered even at the final cut are
//     always shown as the IEE's bytes.
//
// # Results tree
//
// Paths are relative to the tree root:
//
//	datos/PUE_{GUB,DIP_LOC,AYUN}_2024.csv   IEE layout, byte-faithful: UTF-8 BOM,
//	                                        election, cut time, summary recomputed
//	                                        for the cut, one row per acta; a row
//	                                        already registered is the IEE's bytes
//	datos/PUE_*_Candidaturas_2024.csv       the IEE's candidaturas, as-is
//	datos/YYYYMMDD_HHMM_PREP_PUE.zip        the cut's package: folders
//	                                        YYYYMMDD_HHMM_PREP_{GUB,...}_PUE/ with
//	                                        the CSVs; entry times = cut time
//	json/{GUB,DIP_LOC,AYUN}/totales.json    state totals: actas counters, votes per
//	                                        column, per candidate (GUB), area list
//	json/{GUB,DIP_LOC}/distritos/NNN.json   one per district
//	json/AYUN/municipios/NNN.json           one per municipality
//	json/main.json                          the pointer: cut id and times, and
//	                                        path, size and SHA-256 of every datos/
//	                                        and json/ file of the cut
//	actas/{GUB,DIP_LOC,AYUN}/*.jpg          one image per registered acta that has
//	                                        an image (CODIGO_INTEGRIDAD), named like
//	                                        Gubernatura_024_TEHUACAN_1972_B01.jpg
//
// Acta images are a JPEG/JFIF header followed by incompressible ChaCha8 bytes;
// their size and bytes depend only on (Options.Seed, path), so an image never
// changes once written. The CODIGO_INTEGRIDAD cells stay the IEE's and do not
// hash these synthetic images.
//
// Everything is deterministic: the same Options give the same bytes for every
// cut (JSON has a fixed field order; the zip a fixed time). Writing a cut over
// the previous one touches only what changed: new images, the CSVs, the new
// zip, JSON files whose numbers moved, and json/main.json last.
package resultsgen
