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
// Paths are relative to the tree root; ID is the cut id, YYYYMMDD_HHMM of the
// cut time in UTC-6:
//
//	datos/PUE_{GUB,DIP_LOC,AYUN}_2024.csv     IEE layout, byte-faithful: UTF-8 BOM,
//	                                          election, cut time, summary recomputed
//	                                          for the cut, one row per acta; a row
//	                                          already registered is the IEE's bytes
//	datos/PUE_*_Candidaturas_2024.csv         the IEE's candidaturas, as-is
//	datos/ID_PREP_PUE.zip                     the cut's package: folders
//	                                          ID_PREP_{GUB,...}_PUE/ with the CSVs;
//	                                          entry times = cut time
//	json/ID/{GUB,DIP_LOC,AYUN}/totales.json   state totals: actas counters, votes per
//	                                          column, per candidate (GUB), area list
//	                                          (with the paths of the area files)
//	json/ID/{GUB,DIP_LOC}/distritos/NNN.json  one per district
//	json/ID/AYUN/municipios/NNN.json          one per municipality
//	json/main.json                            the pointer (below)
//	actas/{GUB,DIP_LOC,AYUN}/*.jpg            one image per registered acta that has
//	                                          an image (CODIGO_INTEGRIDAD), named like
//	                                          Gubernatura_024_TEHUACAN_1972_B01.jpg
//
// The CSV databases and candidaturas files keep stable paths, as on the IEE's
// site; everything else a cut renders goes to paths of its own.
//
// # The pointer
//
// json/main.json names the cut ("cut": id, index, time, label, replayed
// instant, final), the elections, the cut's JSON directory ("json_dir") and,
// in "files", the path, size and SHA-256 of every file whose path is unique
// to the cut: each file under json/ID/ and datos/ID_PREP_PUE.zip. Since no
// other cut writes those paths, a hash in main.json stays true for as long
// as the file exists: a publisher that switches main.json last, and keeps
// the files that left the tree for a while, never serves a main.json naming
// a file it lacks or holds with other bytes. The stable-path CSVs and
// candidaturas files are listed by path only, in "downloads": every cut
// rewrites them in place, so a hash of them would be wrong for a reader that
// still holds the previous main.json; a client that needs the CSVs of exactly
// the cut it shows takes them from the cut's zip.
//
// This holds for trees written by one [Night] (or Nights with equal
// Options): cut ids are distinct within a night and a cut's bytes depend
// only on the Options. Writing a cut of a night with other Options over a
// tree that holds the same cut id rewrites that cut's files in place.
//
// Acta images are a JPEG/JFIF header followed by incompressible ChaCha8 bytes;
// their size and bytes depend only on (Options.Seed, path), so an image never
// changes once written. The CODIGO_INTEGRIDAD cells stay the IEE's and do not
// hash these synthetic images.
//
// Everything is deterministic: the same Options give the same bytes for every
// cut (JSON has a fixed field order; the zip a fixed time). Writing a cut over
// the previous one writes new images, the CSVs, the new zip, the new JSON
// directory and json/main.json last, leaves unchanged files untouched, and
// only then removes the previous cut's zip and JSON directory. (A publisher
// such as prepcast keeps the files that leave the tree on its difusores for
// a retention window, so a client that loaded the previous main.json can
// still fetch them.)
package resultsgen
